"""A small, fixed day of traffic for the first run: a few orders down each path.

Times are offsets from a start time, so the same story plays at any date.
"""
from __future__ import annotations

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000

_ADDRESS = {"recipient_name": "Sam Lee", "phone": "+65 8123 4567", "line1": "10 Orchard Road", "line2": None,
            "city": "Singapore", "postcode": "238826", "country": "SG"}
_ITEMS = {
    "GB": ("GBP", [("sku-case", "Phone case", 2, "9.99")]),
    "SG": ("SGD", [("sku-lamp", "Desk lamp", 1, "39.90"), ("sku-bulb", "LED bulb", 2, "4.50")]),
    "MY": ("MYR", [("sku-tee", "Cotton tee", 3, "25.00")]),
}

# (order, region, [(offset, event_type, extra fields)])
_STORIES = [
    ("demo-1001", "GB", [(2 * MIN, "ORDER_PAID", {}), (20 * HOUR, "PACKAGE_SHIPPED", {}),
                         (30 * HOUR, "LOGISTICS_UPDATE", {"status": "COLLECTED"}), (60 * HOUR, "DELIVERED", {}),
                         (70 * HOUR, "BUYER_CONFIRMED_RECEIPT", {})]),
    ("demo-1002", "SG", []),  # never paid: reminders, then cancelled after 48 h
    ("demo-1003", "SG", [(30 * MIN, "ORDER_PAID", {}), (2 * HOUR, "BUYER_CANCEL_REQUESTED", {"reason": "CHANGED_MIND"})]),
    ("demo-1004", "MY", [(5 * MIN, "ORDER_PAID", {})]),  # never shipped: late dispatch after 72 h
    ("demo-1005", "GB", [(10 * MIN, "ORDER_PAID", {}), (HOUR, "SELLER_CANCELLED", {"reason": "OUT_OF_STOCK"})]),
    ("demo-1006", "SG", [(MIN, "ORDER_PAID", {}), (10 * HOUR, "PACKAGE_SHIPPED", {}),
                         (20 * HOUR, "LOGISTICS_UPDATE", {"status": "IN_TRANSIT"}),
                         (40 * HOUR, "DELIVERY_FAILED", {"reason": "RECIPIENT_UNAVAILABLE"})]),
    ("demo-1007", "MY", [(50 * HOUR, "ORDER_PAID", {})]),  # pays after the auto-cancel
]

_FIELDS = {
    "ORDER_PAID": {"payment_method": "CARD"},
    "PACKAGE_SHIPPED": {"carrier": "J&T Express", "tracking_number": "JT0001"},
    "LOGISTICS_UPDATE": {"location": "Sort centre", "description": "Parcel scanned"},
}


def sample_events(start: int) -> list[dict]:
    """The sample traffic, sorted by event time, starting at `start` (UTC ms)."""
    events = []
    for order_id, region, story in _STORIES:
        currency, items = _ITEMS[region]
        line_items = [{"sku_id": s, "product_name": n, "quantity": q, "unit_price": p} for s, n, q, p in items]
        total = f"{sum(q * float(p) for _, _, q, p in items):.2f}"
        events.append({"event_id": f"{order_id}-0", "event_type": "ORDER_CREATED", "order_id": order_id,
                       "event_time": start, "shop_id": f"shop-{region.lower()}", "region": region,
                       "buyer_id": f"buyer-{order_id[-2:]}", "currency": currency, "line_items": line_items,
                       "total_amount": total, "shipping_address": _ADDRESS})
        for n, (offset, kind, extra) in enumerate(story, 1):
            fields = {**_FIELDS.get(kind, {}), **extra}
            if kind == "ORDER_PAID":
                fields["amount"] = total
            events.append({"event_id": f"{order_id}-{n}", "event_type": kind, "order_id": order_id,
                           "event_time": start + offset, **fields})
    return sorted(events, key=lambda e: e["event_time"])
