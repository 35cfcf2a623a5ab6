"""Builders for upstream events in the JSON form of DOMAIN.md, for tests."""
from __future__ import annotations

import itertools
import json
from decimal import Decimal
from importlib import resources

from orderflow.streams.lifecycle import Policy
from orderflow.streams.stock.room import StockRoom

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_000_000_000  # 2026-11-18T11:06:40Z, a Wednesday

_ids = itertools.count(1)

ADDRESS = {"recipient_name": "Ada Buyer", "phone": "+44 7700 900123", "line1": "1 High Street",
           "line2": None, "city": "London", "postcode": "N1 9GU", "country": "GB"}


def event(event_type: str, order_id: str, at: int, **fields) -> dict:
    return {"event_id": f"e{next(_ids)}", "event_type": event_type, "order_id": order_id, "event_time": at, **fields}


def created(order_id: str, at: int = T0, region: str = "GB", shop_id: str = "shop-1", **fields) -> dict:
    base = dict(shop_id=shop_id, region=region, buyer_id="buyer-1", currency="GBP",
                line_items=[{"sku_id": "sku-1", "product_name": "Phone case", "quantity": 2, "unit_price": "9.99"}],
                total_amount="19.98", shipping_address=ADDRESS)
    return event("ORDER_CREATED", order_id, at, **{**base, **fields})


def paid(order_id: str, at: int, amount: str = "19.98") -> dict:
    return event("ORDER_PAID", order_id, at, amount=amount, payment_method="CARD")


def shipped(order_id: str, at: int, **fields) -> dict:
    """Fields: package_id, line_ids (a package of some lines), carrier, tracking_number."""
    return event("PACKAGE_SHIPPED", order_id, at, **{"carrier": "Royal Mail", "tracking_number": "RM123", **fields})


def update(order_id: str, at: int, status: str = "IN_TRANSIT", **fields) -> dict:
    return event("LOGISTICS_UPDATE", order_id, at, status=status, location="Leeds hub", description="scanned", **fields)


def failed(order_id: str, at: int, **fields) -> dict:
    return event("DELIVERY_FAILED", order_id, at, reason="WRONG_ADDRESS", **fields)


def redelivery(order_id: str, at: int, **fields) -> dict:
    return event("REDELIVERY_REQUESTED", order_id, at, new_address={**ADDRESS, "line1": "2 High Street"}, **fields)


def delivered(order_id: str, at: int, **fields) -> dict:
    return event("DELIVERED", order_id, at, **fields)


def confirmed(order_id: str, at: int) -> dict:
    return event("BUYER_CONFIRMED_RECEIPT", order_id, at)


def cancel_request(order_id: str, at: int) -> dict:
    return event("BUYER_CANCEL_REQUESTED", order_id, at, reason="CHANGED_MIND")


def cancel_response(order_id: str, at: int, decision: str) -> dict:
    return event("SELLER_CANCEL_RESPONSE", order_id, at, decision=decision)


def seller_cancelled(order_id: str, at: int, reason: str = "OUT_OF_STOCK", line_ids: list[str] | None = None) -> dict:
    return event("SELLER_CANCELLED", order_id, at, reason=reason, **({"line_ids": line_ids} if line_ids else {}))


def operator_cancelled(order_id: str, at: int, reason: str = "FRAUD") -> dict:
    return event("OPERATOR_CANCELLED", order_id, at, reason=reason)


def lines(count: int) -> list[dict]:
    """`count` line items: sku-1 x1 at 10.00, sku-2 x2 at 20.00, ..."""
    return [{"sku_id": f"sku-{n}", "product_name": f"Product {n}", "quantity": n, "unit_price": f"{10 * n}.00"}
            for n in range(1, count + 1)]


def total(items: list[dict]) -> str:
    return str(sum(Decimal(item["unit_price"]) * item["quantity"] for item in items))


def policy_text_with(**regions: str) -> str:
    """The packaged region policy file with extra settings (TOML lines) for some regions."""
    text = resources.files("orderflow.streams.lifecycle").joinpath("region_policy.toml").read_text()
    for region, settings in regions.items():
        assert f"[regions.{region}]\n" in text, region
        text = text.replace(f"[regions.{region}]\n", f"[regions.{region}]\n{settings}\n")
    return text


def early_policy(**changes) -> Policy:
    """A policy file as written before the optional settings came in (only GB served), with `changes`."""
    settings = {"payment_reminders": ["15m", "16h"], "unpaid_timeout": "48h", "cancel_request_timeout": "48h",
                "ship_by": "72h", "redelivery_window": "7d", "redelivery_dispatch_business_days": 2,
                "auto_confirm": "7d", "shipment_stalled": "5d", "orphan_grace": "1h", "after_sales_window": "15d",
                "retention": "90d", **changes}
    lines_ = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    return Policy.from_toml(f"[default]\n{lines_}\n[regions.GB]\ntimezone = \"Europe/London\"\nholidays = \"GB\"\n")


def policy_with(**regions: str) -> Policy:
    return Policy.from_toml(policy_text_with(**regions))


def review(order_id: str, at: int, rating: int = 5) -> dict:
    return event("REVIEW_POSTED", order_id, at, rating=rating, comment="great")


def after_sales(order_id: str, at: int, kind: str = "RETURN", **fields) -> dict:
    return event("AFTER_SALES_REQUESTED", order_id, at, kind=kind, reason="DAMAGED", **fields)


def after_sales_resolved(order_id: str, at: int, outcome: str = "APPROVED", **fields) -> dict:
    return event("AFTER_SALES_RESOLVED", order_id, at, outcome=outcome, **fields)


def case_response(order_id: str, at: int, case_id: str, decision: str = "ACCEPT") -> dict:
    return event("AFTER_SALES_RESPONSE", order_id, at, case_id=case_id, decision=decision, reason="CHECKED")


def return_shipped(order_id: str, at: int, case_id: str) -> dict:
    return event("RETURN_SHIPPED", order_id, at, case_id=case_id, carrier="Evri", tracking_number="EV1")


def return_received(order_id: str, at: int, case_id: str) -> dict:
    return event("RETURN_RECEIVED", order_id, at, case_id=case_id)


def refund_issued(order_id: str, at: int, case_id: str, amount: str) -> dict:
    return event("REFUND_ISSUED", order_id, at, case_id=case_id, amount=amount)


def stock_event(event_type: str, sku_id: str, at: int, **fields) -> dict:
    return {"event_id": f"e{next(_ids)}", "event_type": event_type, "sku_id": sku_id, "event_time": at, **fields}


def stock_set(sku_id: str, at: int, quantity: int) -> dict:
    return stock_event("STOCK_SET", sku_id, at, quantity=quantity)


def stock_adjusted(sku_id: str, at: int, delta: int) -> dict:
    return stock_event("STOCK_ADJUSTED", sku_id, at, delta=delta)


def price_changed(sku_id: str, at: int, unit_price: str, currency: str = "GBP") -> dict:
    return stock_event("PRICE_CHANGED", sku_id, at, unit_price=unit_price, currency=currency)


def item(sku_id: str, quantity: int, unit_price: str = "9.99") -> dict:
    return {"sku_id": sku_id, "product_name": f"Product {sku_id}", "quantity": quantity, "unit_price": unit_price}


def ordered(order_id: str, sku_id: str, quantity: int, at: int, unit_price: str = "9.99") -> dict:
    """ORDER_CREATED for one line of one SKU."""
    return created(order_id, at, line_items=[item(sku_id, quantity, unit_price)],
                   total_amount=str(Decimal(unit_price) * quantity))


class RecordingRoom(StockRoom):
    """The warehouse, noting every stock request the orders make."""

    def __init__(self):
        super().__init__({})
        self.requests: list[dict] = []

    def handle(self, request: dict) -> list[dict]:
        self.requests.append(request)
        return super().handle(request)
