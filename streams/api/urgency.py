"""The seller centre's urgency views: what must ship soon, what the platform will cancel soon, what is
overdue, and what waits for the seller. Pure: the time they are judged at is passed in (the worker's
clock), so that tests pin it.

    due=ship_within_24h          to ship, ship-by in the next 24 h (not passed yet)
    due=auto_cancel_within_24h   unpaid, or with a cancellation request, that the platform cancels
                                 within 24 h (the payment window or the seller's answer runs out)
    due=overdue                  to ship, ship-by passed
    action_needed=1              a condition that waits for the seller: a cancellation request, stock
                                 or price to sort out, a failed delivery nobody asked again, an
                                 after-sales case
"""
from __future__ import annotations

from orderflow.streams.lifecycle import after_sales
from orderflow.streams.lifecycle import status as st
from orderflow.streams.lifecycle.cancellation import CANCEL_REQUEST_TIMEOUT
from orderflow.streams.lifecycle.payment import UNPAID_TIMEOUT
from orderflow.streams.lifecycle.shipping import awaiting_redelivery_request, ship_by_time

WITHIN = 24 * 3600 * 1000
DUE = ("ship_within_24h", "auto_cancel_within_24h", "overdue")
# The statuses each view can hold (a listing walks only those).
_TO_SHIP = (st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING)
DUE_STATUSES = {"ship_within_24h": _TO_SHIP, "overdue": _TO_SHIP,
                "auto_cancel_within_24h": st.STATUSES}
_SELLERS_TURN = (st.CANCEL_REQUESTED, st.OUT_OF_STOCK, st.PRICE_MISMATCH)


def is_due(order: dict, view: str, now: int) -> bool:
    """Whether the order is in the urgency view `view` (one of DUE) at `now`."""
    if view == "auto_cancel_within_24h":
        deadlines, conditions = order.get("deadlines") or {}, order.get("conditions") or {}
        cancels = [deadlines.get(UNPAID_TIMEOUT) if order.get("status") == st.UNPAID else None,
                   deadlines.get(CANCEL_REQUEST_TIMEOUT) if st.CANCEL_REQUESTED in conditions else None]
        return any(at is not None and at <= now + WITHIN for at in cancels)
    ship_by = ship_by_time(order)
    if ship_by is None:
        return False
    return ship_by <= now if view == "overdue" else now < ship_by <= now + WITHIN


def action_needed(order: dict) -> bool:
    """A condition that waits for the seller, a failed delivery awaiting a redelivery request, or an
    after-sales case awaiting the seller."""
    conditions = order.get("conditions") or {}
    return (any(name in conditions for name in _SELLERS_TURN) or awaiting_redelivery_request(order)
            or any(after_sales.awaits_seller(case) for case in after_sales.open_cases(order)))
