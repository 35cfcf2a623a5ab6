"""From paid to delivered: the ship-by deadline, packages handed over, carrier updates,
stalled parcels, failed deliveries and redelivery.

An order ships in one package (every open line) or in several (`line_ids`); a
line ships at most once. Each package has its own carrier, tracking, stall
clock and failure and redelivery windows; the order follows its packages:

    PARTIALLY_SHIPPING   some open lines shipped, others still to ship (the ship-by clock runs on)
    AWAITING_COLLECTION  every open line shipped, some package not yet collected
    IN_TRANSIT           every package collected (or delivered), some not delivered
    DELIVERED            every package delivered; the auto-confirm period runs from the last delivery

A package whose redelivery window expires is given up: its lines are cancelled
(to be refunded), and the order is cancelled only when nothing is left delivered,
on its way or to ship. The first package's deadlines keep their plain names
(SHIPMENT_STALLED, ...), as before packages; a later one's are KIND:package_id.
Orders stored before packages came in hold their one parcel on the order itself:
`packages` reads it as package "1".
"""
from __future__ import annotations

import bisect

from . import after_sales, lines
from . import status as st
from .order import Change, deadline_for, deadline_owner, index_of
from .payment import SHIP_BY
SHIPMENT_STALLED = "SHIPMENT_STALLED"
REDELIVERY_WINDOW = "REDELIVERY_WINDOW"
REDELIVERY_DISPATCH = "REDELIVERY_DISPATCH"
AUTO_CONFIRM = "AUTO_CONFIRM"

# A package's own status (CANCELLED: given up after its redelivery window).
_ON_THE_WAY = (st.AWAITING_COLLECTION, st.IN_TRANSIT)
_SHIPPING = (st.PARTIALLY_SHIPPING, *_ON_THE_WAY)  # the order's statuses while a package may move
_GIVEN_UP = st.CANCELLED
_BEFORE_PACKAGES = {st.AWAITING_COLLECTION: st.AWAITING_COLLECTION, st.IN_TRANSIT: st.IN_TRANSIT,
                    st.DELIVERED: st.DELIVERED, st.COMPLETED: st.DELIVERED}


def packages(order: dict) -> list[dict]:
    """The order's packages, first shipped first."""
    if order.get("packages") or order.get("carrier") is None:
        return order.get("packages") or []
    failed = (order.get("conditions") or {}).get(st.DELIVERY_FAILED)
    kept = {"last_logistics_at": order.get("last_logistics_at"), "delivered_at": order.get("delivered_at"),
            "failed": failed}
    return [{"package_id": "1", "line_ids": lines.open_line_ids(order), "carrier": order["carrier"],
             "tracking_number": order.get("tracking_number"), "shipped_at": order.get("shipped_at"),
             "status": _BEFORE_PACKAGES.get(order["status"], _GIVEN_UP),
             **{name: value for name, value in kept.items() if value}}]


def package_tracking(order: dict, package_id: str) -> list[dict]:
    """One package's tracking entries (those stored before packages belong to the first)."""
    every = packages(order)
    first = every[0]["package_id"] if every else None
    return [entry for entry in order.get("tracking") or () if entry.get("package_id", first) == package_id]


def shipped_line_ids(order: dict) -> set[str]:
    return {line for package in packages(order) for line in package["line_ids"]}


def any_delivered(order: dict) -> bool:
    """Has some package of the order been delivered?"""
    return any(package["status"] == st.DELIVERED for package in packages(order))


def unshipped_line_ids(order: dict) -> list[str]:
    """Open lines no package carries yet."""
    shipped = shipped_line_ids(order)
    return [line for line in lines.open_line_ids(order) if line not in shipped]


def awaiting_redelivery_request(order: dict) -> bool:
    """A delivery of a package on its way failed and nobody has asked for it again yet."""
    return order.get("status") in _SHIPPING and any(_awaits_request(package) for package in packages(order))


def _awaits_request(package: dict) -> bool:
    """A package given up, or delivered, keeps the record of its failure, but awaits nothing."""
    failed = package.get("failed")
    return failed is not None and "redelivery_requested_at" not in failed and package["status"] in _ON_THE_WAY


def ship_by_time(order: dict) -> int | None:
    """When an order's lines must be handed over: its pending ship-by deadline, or, once that
    fired, the time it fired (kept by the late-dispatch condition). None once all shipped."""
    if order.get("status") not in (st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING):
        return None
    due = (order.get("deadlines") or {}).get(SHIP_BY)
    if due is not None:
        return due
    late = (order.get("conditions") or {}).get(st.LATE_DISPATCH)
    return None if late is None else late.get("since")


def _deadline(kind: str, order: dict, package_id: str) -> str:
    return kind if packages(order)[0]["package_id"] == package_id else deadline_for(kind, package_id)


def _due_package(change: Change, deadline: str) -> tuple[int | None, dict | None]:
    """The package a deadline is for: the first for KIND, the one named for KIND:package_id."""
    every = packages(change.order)
    owner = deadline_owner(deadline)
    if owner is None:
        index = 0 if every else None
    else:
        index = index_of(every, "package_id", owner)
    return (None, None) if index is None else (index, every[index])


def _package(change: Change, event: dict) -> tuple[int, dict]:
    """The package the event names (`package_id`), or the only one when it names none."""
    every = packages(change.order)
    wanted = event.get("package_id")
    if wanted is None:
        change.require(len(every) == 1, "name the package (package_id): the order has {} packages", len(every))
        return 0, every[0]
    index = index_of(every, "package_id", wanted)
    change.require(index is not None, "the order has no package {} (its packages: {})", wanted[:128],
                   ", ".join(package["package_id"] for package in every)[:200])
    return index, every[index]


def _update(change: Change, index: int, **fields) -> dict:
    """Store the package at `index` with `fields` changed (None removes a field)."""
    if not change.order.get("packages"):  # stored before packages: its parcel becomes package "1"
        change.order["packages"] = packages(change.order)
    stored = change.edit("packages")
    package = {**stored[index], **fields} if index < len(stored) else dict(fields)
    stored[index:index + 1] = [{k: v for k, v in package.items() if v is not None}]
    return stored[index]


def _track(change: Change, package_id: str, event: dict, status: str) -> None:
    """Add a tracking entry in event-time order (carrier scans can arrive out of order)."""
    bisect.insort(change.edit("tracking"), {
        "at": change.at, "status": status, "location": event.get("location"),
        "description": event.get("description") or event.get("reason"), "package_id": package_id,
    }, key=lambda entry: entry["at"])


def _follow_packages(change: Change) -> None:
    """The order's status and delivery-failed condition as its packages stand."""
    order = change.order
    every = packages(order)
    # Packages awaiting a redelivery request first, then redeliveries awaiting the carrier.
    failed = sorted((package for package in every if package.get("failed") and package["status"] in _ON_THE_WAY),
                    key=lambda package: not _awaits_request(package))
    if failed:
        change.open_condition(st.DELIVERY_FAILED, **failed[0]["failed"], package_id=failed[0]["package_id"])
    else:
        change.close_condition(st.DELIVERY_FAILED)
    moving = [package["status"] for package in every if package["status"] != _GIVEN_UP]
    if unshipped_line_ids(order):
        to, reason = st.PARTIALLY_SHIPPING, "SHIPPED"
    elif st.AWAITING_COLLECTION in moving:
        to, reason = st.AWAITING_COLLECTION, "SHIPPED"
    elif st.IN_TRANSIT in moving:
        to, reason = st.IN_TRANSIT, "COLLECTED"
    else:
        to, reason = st.DELIVERED, "DELIVERED"
    if order["status"] in (st.PARTIALLY_SHIPPING, st.AWAITING_SHIPMENT) and to != st.PARTIALLY_SHIPPING:
        # Everything open is handed over: shipping settles what confirmation raised.
        change.close_condition(st.LATE_DISPATCH, st.OUT_OF_STOCK, st.PRICE_MISMATCH)
        change.cancel_deadlines(SHIP_BY)
    if to == order["status"]:
        return
    change.move(to, reason)
    if to == st.DELIVERED:
        last = max(package.get("delivered_at", change.at) for package in every if package["status"] == st.DELIVERED)
        change.schedule(AUTO_CONFIRM, max(change.at, last + change.rules.auto_confirm))


def settle_lines(change: Change) -> None:
    """Some lines of a partly shipped order were cancelled: the order follows what is left."""
    if change.status == st.PARTIALLY_SHIPPING:
        _follow_packages(change)


def package_shipped(change: Change, event: dict) -> None:
    change.require_status("PACKAGE_SHIPPED", st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING)
    change.require(st.CANCEL_REQUESTED not in change.order["conditions"],
                   "answer the pending cancellation request before shipping")
    order = change.order
    every = packages(order)
    known = [package["package_id"] for package in every]
    package_id = event.get("package_id") or next(str(n) for n in range(len(every) + 1, 2 * len(every) + 2)
                                                 if str(n) not in known)
    change.require(package_id not in known, "package {} was shipped already", package_id[:128])
    to_ship = unshipped_line_ids(order)
    wanted = event.get("line_ids") or to_ship
    change.forbid(lines.unknown(wanted, lines.line_ids(order)))
    gone = [line for line in wanted if line in lines.cancelled(order)]
    change.require(not gone, "line {} is cancelled", ", ".join(gone)[:200])
    again = [line for line in wanted if line not in to_ship]
    change.require(not again, "line {} shipped already", ", ".join(again)[:200])
    _update(change, len(every), package_id=package_id, line_ids=list(wanted), carrier=event["carrier"],
            tracking_number=event["tracking_number"], shipped_at=change.at, status=st.AWAITING_COLLECTION)
    _track(change, package_id, {"description": f"handed over to {event['carrier']}"}, "SHIPPED")
    _follow_packages(change)
    change.schedule(_deadline(SHIPMENT_STALLED, change.order, package_id), change.at + change.rules.shipment_stalled)


def _moving_package(change: Change, event: dict) -> tuple[int, dict]:
    change.require_status(event["event_type"], *_SHIPPING)
    index, package = _package(change, event)
    change.require(package["status"] in _ON_THE_WAY, "{} is not allowed for package {}, which is {}",
                   event["event_type"], package["package_id"], package["status"])
    return index, package


def logistics_update(change: Change, event: dict) -> None:
    index, package = _moving_package(change, event)
    package_id = package["package_id"]
    _track(change, package_id, event, event["status"])
    # A scan older than the latest one known must not rewind the stall clock.
    latest = max(change.at, package.get("last_logistics_at") or change.at)
    if _awaits_request(package):  # the parcel is on its way back; the redelivery window keeps running
        _update(change, index, last_logistics_at=latest, status=st.IN_TRANSIT)
    else:
        # Any carrier progress after a redelivery request means the redelivery is moving.
        _update(change, index, last_logistics_at=latest, status=st.IN_TRANSIT, failed=None)
        change.cancel_deadlines(_deadline(REDELIVERY_DISPATCH, change.order, package_id))
        change.schedule(_deadline(SHIPMENT_STALLED, change.order, package_id), latest + change.rules.shipment_stalled)
    _follow_packages(change)


def delivery_failed(change: Change, event: dict) -> None:
    index, package = _moving_package(change, event)
    change.require(not _awaits_request(package), "the last failed delivery still awaits a redelivery request")
    package_id = package["package_id"]
    _track(change, package_id, event, "DELIVERY_FAILED")
    _update(change, index, failed={"at": change.at, "reason": event["reason"]})
    order = change.order
    change.cancel_deadlines(_deadline(SHIPMENT_STALLED, order, package_id), _deadline(REDELIVERY_DISPATCH, order, package_id))
    change.schedule(_deadline(REDELIVERY_WINDOW, order, package_id), change.at + change.rules.redelivery_window)
    _follow_packages(change)
    change.notify("alert", "DELIVERY_FAILED", reason=event["reason"], package_id=package_id)


def redelivery_requested(change: Change, event: dict) -> None:
    change.require(awaiting_redelivery_request(change.order), "no failed delivery awaits a redelivery request")
    index, package = _moving_package(change, event)
    change.require(_awaits_request(package), "package {} does not await a redelivery request", package["package_id"])
    _update(change, index, failed={**package["failed"], "redelivery_requested_at": change.at})
    change.order["shipping_address"] = event["new_address"]
    rules = change.rules
    change.cancel_deadlines(_deadline(REDELIVERY_WINDOW, change.order, package["package_id"]))
    change.schedule(_deadline(REDELIVERY_DISPATCH, change.order, package["package_id"]),
                    rules.add_business_days(change.at, rules.redelivery_dispatch_business_days))
    _follow_packages(change)


def delivered(change: Change, event: dict) -> None:
    index, package = _moving_package(change, event)
    package_id = package["package_id"]
    _track(change, package_id, {"description": "delivered"}, "DELIVERED")
    _update(change, index, status=st.DELIVERED, delivered_at=change.at, failed=None)
    order = change.order
    change.cancel_deadlines(*(_deadline(kind, order, package_id)
                              for kind in (SHIPMENT_STALLED, REDELIVERY_WINDOW, REDELIVERY_DISPATCH)))
    _follow_packages(change)


def ship_by_overdue(change: Change, deadline: str) -> None:
    if change.status in (st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING):
        change.order["late_dispatched"] = True
        change.open_condition(st.LATE_DISPATCH, since=change.at)
        change.notify("alert", "SHIP_BY_OVERDUE", line_ids=",".join(unshipped_line_ids(change.order)))


def shipment_stalled(change: Change, deadline: str) -> None:
    _, package = _due_package(change, deadline)
    if package is not None and package["status"] in _ON_THE_WAY:
        change.notify("alert", "SHIPMENT_STALLED", last_update_at=package.get("last_logistics_at"),
                      carrier=package["carrier"], tracking_number=package["tracking_number"],
                      package_id=package["package_id"])


def redelivery_window_expired(change: Change, deadline: str) -> None:
    """Nobody asked for the failed delivery again: the package is given up, its lines to be refunded."""
    index, package = _due_package(change, deadline)
    if package is None or not _awaits_request(package):
        return
    order = change.order
    refund = after_sales.refund_for(order, package["line_ids"])
    change.notify("alert", "REDELIVERY_WINDOW_EXPIRED", package_id=package["package_id"],
                  line_ids=",".join(package["line_ids"]), amount=str(refund), currency=order.get("currency"))
    _update(change, index, status=_GIVEN_UP)
    # Its lines are cancelled even when the order is (its refund is the alert's, nothing more is due).
    lines.cancel(order, package["line_ids"], change.at, "LOGISTICS_FAILURE")
    if any(p["status"] != _GIVEN_UP for p in packages(order)) or unshipped_line_ids(order):
        _follow_packages(change)
    else:
        change.move(st.CANCELLED, "LOGISTICS_FAILURE", initiator="SYSTEM")


def redelivery_dispatch_overdue(change: Change, deadline: str) -> None:
    _, package = _due_package(change, deadline)
    if package is not None and package.get("failed") and package["status"] in _ON_THE_WAY:
        change.notify("alert", "REDELIVERY_DISPATCH_OVERDUE", carrier=package["carrier"],
                      package_id=package["package_id"])


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
