"""The upstream event contract (DOMAIN.md): what each event type must carry.

`problem(event)` names the first thing wrong with an event, or returns None.
Both the CLI (before publishing) and the worker (after decoding) use it, so a
bad event is refused with the same reason wherever it shows up.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from . import lines

ENVELOPE = ("event_id", "event_type", "order_id", "event_time")
# The warehouse's events (inventory-events, keyed by sku_id) carry the SKU instead of an order.
INVENTORY_ENVELOPE = ("event_id", "event_type", "sku_id", "event_time")
INVENTORY: dict[str, tuple[str, ...]] = {
    "STOCK_SET": ("quantity",),         # a count of the units on hand (reserved ones included)
    "STOCK_ADJUSTED": ("delta",),       # units received (+) or written off (-)
    "PRICE_CHANGED": ("unit_price", "currency"),  # the catalogue price from event_time on
}
MAX_UNITS = 10**9

ESSENTIAL: dict[str, tuple[str, ...]] = {
    "ORDER_CREATED": ("shop_id", "region", "buyer_id", "currency", "line_items", "total_amount", "shipping_address"),
    "ORDER_PAID": ("amount", "payment_method"),
    "BUYER_CANCEL_REQUESTED": ("reason",),
    "SELLER_CANCEL_RESPONSE": ("decision",),
    "SELLER_CANCELLED": ("reason",),
    "PACKAGE_SHIPPED": ("carrier", "tracking_number"),
    "LOGISTICS_UPDATE": ("status", "location", "description"),
    "DELIVERY_FAILED": ("reason",),
    "REDELIVERY_REQUESTED": ("new_address",),
    "DELIVERED": (),
    "BUYER_CONFIRMED_RECEIPT": (),
    "REVIEW_POSTED": ("rating", "comment"),
    "AFTER_SALES_REQUESTED": ("kind", "reason"),
    "AFTER_SALES_RESOLVED": ("outcome",),
    "OPERATOR_CANCELLED": ("reason",),
    "AFTER_SALES_RESPONSE": ("case_id", "decision"),
    "RETURN_SHIPPED": ("case_id", "carrier", "tracking_number"),
    "RETURN_RECEIVED": ("case_id",),
    "REFUND_ISSUED": ("case_id", "amount"),
}
_TAKES_LINE_IDS = ("SELLER_CANCELLED", "AFTER_SALES_REQUESTED", "PACKAGE_SHIPPED")
_TAKES_PACKAGE_ID = ("PACKAGE_SHIPPED", "LOGISTICS_UPDATE", "DELIVERY_FAILED", "REDELIVERY_REQUESTED", "DELIVERED")
_TAKES_CASE_ID = ("AFTER_SALES_REQUESTED", "AFTER_SALES_RESPONSE", "RETURN_SHIPPED", "RETURN_RECEIVED", "REFUND_ISSUED",
                  "AFTER_SALES_RESOLVED")

CHOICES = {
    "decision": ("ACCEPT", "REJECT"),
    "status": ("COLLECTED", "IN_TRANSIT", "OUT_FOR_DELIVERY"),
    "kind": ("RETURN", "REFUND", "EXCHANGE", "REPAIR"),
    "outcome": ("APPROVED", "REJECTED", "COMPLETED"),
}
ADDRESS_FIELDS = ("recipient_name", "phone", "line1", "city", "country")
LINE_ITEM_FIELDS = ("sku_id", "product_name", "quantity", "unit_price")

# Bounds that keep one hostile event from bloating state or outputs.
MAX_ID = 128
MAX_TEXT = 4096
MAX_LINE_ITEMS = 500
MAX_AMOUNT = Decimal("1e12")
# Event times outside this range (2000-01-01 .. 2100-01-01) are not real order history.
MIN_TIME, MAX_TIME = 946_684_800_000, 4_102_444_800_000


def _amount(value) -> str | None:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return f"not a decimal amount: {str(value)[:40]!r}"
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        return f"amount out of range: {str(value)[:40]!r}"
    return None


def _address(name: str, value) -> str | None:
    if not isinstance(value, dict):
        return (f"{name} must be an object with {', '.join(ADDRESS_FIELDS)} (line2, postcode optional), "
                f"not {'a one-line string' if isinstance(value, str) else type(value).__name__}")
    missing = [f for f in ADDRESS_FIELDS if not value.get(f)]
    return f"{name} lacks {', '.join(missing)}" if missing else None


def _limit(key: str) -> int:
    # Amounts are decimal strings: their length is bounded too, as each is kept on the order.
    return MAX_ID if key.endswith(("_id", "price", "amount")) or key in ("currency", "region") else MAX_TEXT


def _text_problem(event: dict) -> str | None:
    """The first string longer than its limit, at the top level or one level down (items, addresses).
    No limit is below MAX_ID, so a string within it needs no look-up (most are)."""
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if len(value) > MAX_ID and len(value) > _limit(key):
                return f"field {key} is {len(value)} characters long (at most {_limit(key)})"
        elif kind is dict or kind is list:
            for inner in (value,) if kind is dict else value:
                if type(inner) is not dict:
                    continue
                for name, text in inner.items():
                    if type(text) is str and len(text) > MAX_ID and len(text) > _limit(name):
                        return f"field {key}.{name} is {len(text)} characters long (at most {_limit(name)})"
    return None


def _envelope_problem(event: dict, envelope: tuple[str, ...], essential: dict[str, tuple[str, ...]]) -> str | None:
    """What is wrong with the fields every event of the topic carries, its type's fields and their lengths."""
    missing = [f for f in envelope if event.get(f) in (None, "")]
    if missing:
        return f"missing envelope field {', '.join(missing)}"
    for name in ("event_id", envelope[2]):  # ids are text (the Avro records' are; a JSON line's may not be)
        if not isinstance(event[name], str):
            return f"{name} must be text"
    kind = event["event_type"]
    if kind not in essential:
        return f"unknown event_type {str(kind)[:40]!r}"
    if not isinstance(event["event_time"], int) or isinstance(event["event_time"], bool):
        return "event_time must be UTC milliseconds (an integer)"
    if not MIN_TIME <= event["event_time"] < MAX_TIME:
        return f"event_time {event['event_time']} is outside 2000..2100"
    missing = [f for f in essential[kind] if event.get(f) in (None, "", [])]
    if missing:
        return f"{kind} lacks {', '.join(missing)}"
    return _text_problem(event)


def is_inventory(event: dict) -> bool:
    return event.get("event_type") in INVENTORY


def inventory_problem(event: dict) -> str | None:
    """Why a warehouse event breaks the contract, or None when it keeps it."""
    wrong = _envelope_problem(event, INVENTORY_ENVELOPE, INVENTORY)
    if wrong:
        return wrong
    kind = event["event_type"]
    if kind == "PRICE_CHANGED":
        bad = _amount(event["unit_price"])
        return f"unit_price {bad}" if bad else None
    name = INVENTORY[kind][0]
    units = event[name]
    if not isinstance(units, int) or isinstance(units, bool) or abs(units) > MAX_UNITS:
        return f"{name} must be a whole number of units (at most {MAX_UNITS})"
    if kind == "STOCK_SET" and units < 0:
        return f"quantity must not be negative, not {units}"
    if kind == "STOCK_ADJUSTED" and units == 0:
        return "delta must not be 0"
    return None


def problem(event: dict) -> str | None:
    """Why the event breaks the contract, or None when it keeps it."""
    wrong = _envelope_problem(event, ENVELOPE, ESSENTIAL)
    if wrong:
        return wrong
    kind = event["event_type"]
    for key, allowed in CHOICES.items():
        if key in ESSENTIAL[kind] and event[key] not in allowed:
            return f"{key} must be one of {', '.join(allowed)}, not {str(event[key])[:40]!r}"
    if kind == "ORDER_CREATED":
        return _created_problem(event)
    if kind == "REDELIVERY_REQUESTED":
        return _address("new_address", event["new_address"])
    if kind == "REVIEW_POSTED" and event["rating"] not in (1, 2, 3, 4, 5):
        return f"rating must be 1 to 5, not {event['rating']!r}"
    if "amount" in ESSENTIAL[kind] and (bad := _amount(event["amount"])):
        return bad
    if kind == "REFUND_ISSUED" and not (isinstance(event["amount"], str) and Decimal(event["amount"]) > 0):
        return "amount must be a decimal string above 0"
    for name in ("reason", "case_id", "package_id"):
        if event.get(name) is not None and not (isinstance(event[name], str) and event[name]):
            return f"{name} must be text"
    if event.get("case_id") is not None and kind not in _TAKES_CASE_ID:
        return "case_id is for the after-sales events only"
    if event.get("package_id") is not None and kind not in _TAKES_PACKAGE_ID:
        return f"package_id is for {', '.join(_TAKES_PACKAGE_ID)} only"
    if event.get("line_ids") is not None:
        return _line_ids_problem(event["line_ids"]) if kind in _TAKES_LINE_IDS else \
            f"line_ids is for {', '.join(_TAKES_LINE_IDS)} only"
    return None


def _line_ids_problem(ids) -> str | None:
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_LINE_ITEMS:
        return (f"line_ids must be a list of 1 to {MAX_LINE_ITEMS} line ids (leave it out for the whole "
                "order)")
    if not all(isinstance(line, str) and 0 < len(line) <= MAX_ID for line in ids):
        return f"line_ids must hold line ids (text of 1 to {MAX_ID} characters)"
    if len(set(ids)) < len(ids):
        return "line_ids names a line twice"
    return None


def _created_problem(event: dict) -> str | None:
    items = event["line_items"]
    if not isinstance(items, list) or len(items) > MAX_LINE_ITEMS:
        return f"line_items must be a list of at most {MAX_LINE_ITEMS} items"
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or any(item.get(f) in (None, "") for f in LINE_ITEM_FIELDS):
            return f"line item {n} lacks one of {', '.join(LINE_ITEM_FIELDS)}"
        quantity = item["quantity"]
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 0 < quantity <= 100_000:
            return f"line item {n}: quantity must be a whole number from 1 to 100000"
        bad = _amount(item["unit_price"])
        if bad:
            return f"line item {n}: unit_price {bad}"
        given = item.get("line_id")
        if given is not None and not (isinstance(given, str) and given and "," not in given):
            return (f"line item {n}: line_id must be text without commas (or absent: lines are then "
                    "numbered 1, 2, ...)")
    ids = lines.line_ids(event)
    if len(set(ids)) < len(ids):
        return "two line items have the same line_id (a line without one is numbered by its place: 1, 2, ...)"
    return _amount(event["total_amount"]) or _address("shipping_address", event["shipping_address"])
