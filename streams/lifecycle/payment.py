"""Placing and paying: payment reminders, the unpaid timeout, late payments."""
from __future__ import annotations

from . import status as st
from .order import Change

UNPAID_TIMEOUT = "UNPAID_TIMEOUT"
REMORSE_PERIOD = "REMORSE_PERIOD"
SHIP_BY = "SHIP_BY"
_UNPAID_DEADLINES_PREFIX = "PAYMENT_REMINDER_"


def reminder_name(after_ms: int) -> str:
    """PAYMENT_REMINDER_15M, PAYMENT_REMINDER_16H, ... named after their delay."""
    for unit, size in (("D", 86_400_000), ("H", 3_600_000), ("M", 60_000), ("S", 1000)):
        if after_ms % size == 0:
            return f"{_UNPAID_DEADLINES_PREFIX}{after_ms // size}{unit}"
    return f"{_UNPAID_DEADLINES_PREFIX}{after_ms}MS"


def is_reminder(deadline: str) -> bool:
    return deadline.startswith(_UNPAID_DEADLINES_PREFIX)


_ORDER_FIELDS = ("shop_id", "region", "buyer_id", "currency", "line_items", "total_amount",
                 "shipping_address", "channel")


def order_created(change: Change, event: dict) -> None:
    change.require(change.status is None, "order {} already exists (status {})", event["order_id"], change.status)
    change.order.update({name: event.get(name) for name in _ORDER_FIELDS})
    change.move(st.UNPAID, "CREATED")
    rules = change.rules
    for after in rules.payment_reminders:
        change.schedule(reminder_name(after), change.at + after)
    change.schedule(UNPAID_TIMEOUT, change.at + rules.unpaid_timeout)


def order_paid(change: Change, event: dict) -> None:
    if change.status == st.CANCELLED:
        # The money arrived after the platform or seller cancelled: the buyer is owed a refund.
        change.order["refund_due"] = event["amount"]
        change.notify("alert", "PAYMENT_AFTER_CANCEL", amount=event["amount"],
                      cancel_reason=change.order.get("cancel_reason"))
        return
    change.require_status("ORDER_PAID", st.UNPAID)
    change.order["paid_amount"], change.order["payment_method"] = event["amount"], event["payment_method"]
    change.cancel_deadlines(UNPAID_TIMEOUT, *filter(is_reminder, change.order["deadlines"]))
    if change.rules.remorse_period:
        change.move(st.ON_HOLD, "PAID")
        change.schedule(REMORSE_PERIOD, change.at + change.rules.remorse_period)
    else:
        change.move(st.AWAITING_SHIPMENT, "PAID")
        change.schedule(SHIP_BY, change.at + change.rules.ship_by)


def remorse_period_ended(change: Change, deadline: str) -> None:
    """The hold is over: the order may ship, and its ship-by clock starts now."""
    if change.status == st.ON_HOLD:
        change.move(st.AWAITING_SHIPMENT, "REMORSE_PERIOD_ENDED")
        change.schedule(SHIP_BY, change.at + change.rules.ship_by)


def payment_reminder(change: Change, deadline: str) -> None:
    if change.status == st.UNPAID:
        change.notify("reminder", deadline)


def unpaid_timeout(change: Change, deadline: str) -> None:
    if change.status == st.UNPAID:
        change.move(st.CANCELLED, "UNPAID_TIMEOUT", initiator="SYSTEM")


EVENTS = {"ORDER_CREATED": order_created, "ORDER_PAID": order_paid}
DEADLINES = {UNPAID_TIMEOUT: unpaid_timeout, REMORSE_PERIOD: remorse_period_ended}
