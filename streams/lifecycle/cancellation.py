"""Cancellations: the buyer's request and the seller's answer, a buyer's cancel during the remorse
hold, the seller's own cancel (of the whole order or of some lines), an operator's cancel."""
from __future__ import annotations

from . import after_sales, lines, shipping
from . import status as st
from .order import Change

CANCEL_REQUEST_TIMEOUT = "CANCEL_REQUEST_TIMEOUT"
# What an operator (fraud, policy) may still cancel: anything not yet received or finished.
_OPERATOR_CANCELLABLE = (st.UNPAID, st.ON_HOLD, st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING, st.AWAITING_COLLECTION,
                         st.IN_TRANSIT)
_LINES_CANCELLABLE = (st.ON_HOLD, st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING)


def buyer_cancel_requested(change: Change, event: dict) -> None:
    change.require_status("BUYER_CANCEL_REQUESTED", st.ON_HOLD, st.AWAITING_SHIPMENT)
    if change.status == st.ON_HOLD:  # the remorse period: no seller answer needed
        change.order["cancel_detail"] = event["reason"]
        change.move(st.CANCELLED, "BUYER_CANCELLED", initiator="BUYER")
        return
    change.require(st.CANCEL_REQUESTED not in change.order["conditions"], "a cancellation request is already pending")
    change.open_condition(st.CANCEL_REQUESTED, at=change.at, reason=event["reason"])
    change.schedule(CANCEL_REQUEST_TIMEOUT, change.at + change.rules.cancel_request_timeout)
    change.notify("alert", "CANCEL_REQUESTED", reason=event["reason"])


def seller_cancel_response(change: Change, event: dict) -> None:
    change.require(st.CANCEL_REQUESTED in change.order["conditions"], "no cancellation request is pending")
    if event["decision"] == "ACCEPT":
        change.move(st.CANCELLED, "BUYER_REQUEST_ACCEPTED", initiator="BUYER")
        return
    change.close_condition(st.CANCEL_REQUESTED)
    change.cancel_deadlines(CANCEL_REQUEST_TIMEOUT)


def seller_cancelled(change: Change, event: dict) -> None:
    """The whole order, or (`line_ids`, while they wait to ship) some of its lines."""
    wanted = event.get("line_ids")
    if wanted:
        change.require_status("SELLER_CANCELLED with line_ids", *_LINES_CANCELLABLE)
    else:
        change.require_status("SELLER_CANCELLED", st.UNPAID, st.ON_HOLD, st.AWAITING_SHIPMENT)
    change.forbid(change.rules.cancel_reason_problem("SELLER", event["reason"]))
    if wanted:
        change.forbid(lines.unknown(wanted, lines.line_ids(change.order)))
        gone = lines.cancelled(change.order)
        again = [line for line in wanted if line in gone]
        change.require(not again, "line {} is cancelled already", ", ".join(again)[:200])
        shipped = [line for line in wanted if line in shipping.shipped_line_ids(change.order)]
        change.require(not shipped, "line {} shipped already", ", ".join(shipped)[:200])
        if set(lines.open_line_ids(change.order)) - set(wanted):
            _cancel_lines(change, wanted, event["reason"])
            shipping.settle_lines(change)  # cancelling what was left to ship: the order follows its packages
            return
    change.move(st.CANCELLED, "SELLER_CANCELLED", initiator="SELLER", cancel_reason=event["reason"])


def _cancel_lines(change: Change, wanted: list[str], reason: str) -> None:
    """Some lines go; the order keeps its status and ships the rest. Their holds are released
    (confirmation.stock_requests) and a stock or price problem that only they had is closed."""
    order = change.order
    refund = after_sales.refund_for(order, wanted)
    lines.cancel(order, wanted, change.at, reason)
    still_open = {str(n) for n in lines.open_indexes(order)}
    for problem in (st.OUT_OF_STOCK, st.PRICE_MISMATCH):
        condition = order["conditions"].get(problem)
        if condition is not None and not set(condition.get("lines", {})) & still_open:
            change.close_condition(problem)
    change.notify("alert", "LINES_CANCELLED", line_ids=",".join(wanted), amount=str(refund),
                  currency=order.get("currency"), reason=reason)


def operator_cancelled(change: Change, event: dict) -> None:
    change.require_status("OPERATOR_CANCELLED", *_OPERATOR_CANCELLABLE)
    change.require(not shipping.any_delivered(change.order), "a package of the order was delivered already")
    change.forbid(change.rules.cancel_reason_problem("OPERATOR", event["reason"]))
    change.move(st.CANCELLED, "OPERATOR_CANCELLED", initiator="OPERATOR", cancel_reason=event["reason"])


def cancel_request_timeout(change: Change, deadline: str) -> None:
    if st.CANCEL_REQUESTED in change.order["conditions"]:
        change.move(st.CANCELLED, "CANCEL_REQUEST_TIMEOUT", initiator="BUYER")


EVENTS = {
    "BUYER_CANCEL_REQUESTED": buyer_cancel_requested,
    "SELLER_CANCEL_RESPONSE": seller_cancel_response,
    "SELLER_CANCELLED": seller_cancelled,
    "OPERATOR_CANCELLED": operator_cancelled,
}
DEADLINES = {CANCEL_REQUEST_TIMEOUT: cancel_request_timeout}
