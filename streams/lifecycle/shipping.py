"""From paid to delivered: the ship-by deadline, hand-over, carrier updates,
stalled parcels, failed deliveries and redelivery."""
from __future__ import annotations

import bisect

from . import status as st
from .order import Change
from .payment import SHIP_BY
SHIPMENT_STALLED = "SHIPMENT_STALLED"
REDELIVERY_WINDOW = "REDELIVERY_WINDOW"
REDELIVERY_DISPATCH = "REDELIVERY_DISPATCH"
AUTO_CONFIRM = "AUTO_CONFIRM"

_ON_THE_WAY = (st.AWAITING_COLLECTION, st.IN_TRANSIT)


def _track(change: Change, event: dict, status: str) -> None:
    """Add a tracking entry in event-time order (carrier scans can arrive out of order)."""
    bisect.insort(change.edit("tracking"), {
        "at": change.at, "status": status, "location": event.get("location"),
        "description": event.get("description") or event.get("reason"),
    }, key=lambda entry: entry["at"])


def awaiting_redelivery_request(order: dict) -> bool:
    """A delivery failed and nobody has asked for it again yet."""
    failed = (order.get("conditions") or {}).get(st.DELIVERY_FAILED)
    return failed is not None and "redelivery_requested_at" not in failed


def ship_by_time(order: dict) -> int | None:
    """When an order to ship must be handed over: its pending ship-by deadline, or, once that
    fired, the time it fired (kept by the late-dispatch condition). None once shipped."""
    if order.get("status") != st.AWAITING_SHIPMENT:
        return None
    due = (order.get("deadlines") or {}).get(SHIP_BY)
    if due is not None:
        return due
    late = (order.get("conditions") or {}).get(st.LATE_DISPATCH)
    return None if late is None else late.get("since")


def package_shipped(change: Change, event: dict) -> None:
    change.require_status("PACKAGE_SHIPPED", st.AWAITING_SHIPMENT)
    change.require(st.CANCEL_REQUESTED not in change.order["conditions"],
                   "answer the pending cancellation request before shipping")
    change.order["carrier"], change.order["tracking_number"] = event["carrier"], event["tracking_number"]
    _track(change, {"description": f"handed over to {event['carrier']}"}, "SHIPPED")
    # Shipping settles what confirmation raised: the seller sorted out stock and price.
    change.close_condition(st.LATE_DISPATCH, st.OUT_OF_STOCK, st.PRICE_MISMATCH)
    change.cancel_deadlines(SHIP_BY)
    change.move(st.AWAITING_COLLECTION, "SHIPPED")
    change.schedule(SHIPMENT_STALLED, change.at + change.rules.shipment_stalled)


def logistics_update(change: Change, event: dict) -> None:
    change.require_status("LOGISTICS_UPDATE", *_ON_THE_WAY)
    _track(change, event, event["status"])
    # A scan older than the latest one known must not rewind the stall clock.
    latest = max(change.at, change.order.get("last_logistics_at") or change.at)
    change.order["last_logistics_at"] = latest
    if change.status == st.AWAITING_COLLECTION:
        change.move(st.IN_TRANSIT, "COLLECTED")
    if awaiting_redelivery_request(change.order):
        return  # the parcel is on its way back; the redelivery window keeps running
    # Any carrier progress after a redelivery request means the redelivery is moving.
    change.close_condition(st.DELIVERY_FAILED)
    change.cancel_deadlines(REDELIVERY_DISPATCH)
    change.schedule(SHIPMENT_STALLED, latest + change.rules.shipment_stalled)


def delivery_failed(change: Change, event: dict) -> None:
    change.require_status("DELIVERY_FAILED", *_ON_THE_WAY)
    change.require(not awaiting_redelivery_request(change.order),
                   "the last failed delivery still awaits a redelivery request")
    _track(change, event, "DELIVERY_FAILED")
    change.open_condition(st.DELIVERY_FAILED, at=change.at, reason=event["reason"])
    change.cancel_deadlines(SHIPMENT_STALLED, REDELIVERY_DISPATCH)
    change.schedule(REDELIVERY_WINDOW, change.at + change.rules.redelivery_window)
    change.notify("alert", "DELIVERY_FAILED", reason=event["reason"])


def redelivery_requested(change: Change, event: dict) -> None:
    change.require(awaiting_redelivery_request(change.order), "no failed delivery awaits a redelivery request")
    failed = change.order["conditions"][st.DELIVERY_FAILED]
    change.open_condition(st.DELIVERY_FAILED, **failed, redelivery_requested_at=change.at)
    change.order["shipping_address"] = event["new_address"]
    change.cancel_deadlines(REDELIVERY_WINDOW)
    rules = change.rules
    change.schedule(REDELIVERY_DISPATCH, rules.add_business_days(change.at, rules.redelivery_dispatch_business_days))


def delivered(change: Change, event: dict) -> None:
    change.require_status("DELIVERED", *_ON_THE_WAY)
    _track(change, {"description": "delivered"}, "DELIVERED")
    change.close_condition(st.DELIVERY_FAILED)
    change.cancel_deadlines(SHIPMENT_STALLED, REDELIVERY_WINDOW, REDELIVERY_DISPATCH)
    change.move(st.DELIVERED, "DELIVERED")
    change.schedule(AUTO_CONFIRM, change.at + change.rules.auto_confirm)


def ship_by_overdue(change: Change, deadline: str) -> None:
    if change.status == st.AWAITING_SHIPMENT:
        change.order["late_dispatched"] = True
        change.open_condition(st.LATE_DISPATCH, since=change.at)
        change.notify("alert", "SHIP_BY_OVERDUE")


def shipment_stalled(change: Change, deadline: str) -> None:
    if change.status in _ON_THE_WAY:
        change.notify("alert", "SHIPMENT_STALLED", last_update_at=change.order.get("last_logistics_at"),
                      carrier=change.order.get("carrier"), tracking_number=change.order.get("tracking_number"))


def redelivery_window_expired(change: Change, deadline: str) -> None:
    if awaiting_redelivery_request(change.order):
        change.notify("alert", "REDELIVERY_WINDOW_EXPIRED")
        change.move(st.CANCELLED, "LOGISTICS_FAILURE", initiator="SYSTEM")


def redelivery_dispatch_overdue(change: Change, deadline: str) -> None:
    if st.DELIVERY_FAILED in change.order["conditions"]:
        change.notify("alert", "REDELIVERY_DISPATCH_OVERDUE", carrier=change.order.get("carrier"))


EVENTS = {
    "PACKAGE_SHIPPED": package_shipped,
    "LOGISTICS_UPDATE": logistics_update,
    "DELIVERY_FAILED": delivery_failed,
    "REDELIVERY_REQUESTED": redelivery_requested,
    "DELIVERED": delivered,
}
DEADLINES = {
    SHIP_BY: ship_by_overdue,
    SHIPMENT_STALLED: shipment_stalled,
    REDELIVERY_WINDOW: redelivery_window_expired,
    REDELIVERY_DISPATCH: redelivery_dispatch_overdue,
}
