"""Cancellations: the buyer's request and the seller's answer, the seller's own cancel."""
from __future__ import annotations

from . import status as st
from .order import Change

CANCEL_REQUEST_TIMEOUT = "CANCEL_REQUEST_TIMEOUT"


def buyer_cancel_requested(change: Change, event: dict) -> None:
    change.require_status("BUYER_CANCEL_REQUESTED", st.AWAITING_SHIPMENT)
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
    change.require_status("SELLER_CANCELLED", st.UNPAID, st.AWAITING_SHIPMENT)
    change.move(st.CANCELLED, "SELLER_CANCELLED", initiator="SELLER")
    change.order["cancel_detail"] = event["reason"]


def cancel_request_timeout(change: Change, deadline: str) -> None:
    if st.CANCEL_REQUESTED in change.order["conditions"]:
        change.move(st.CANCELLED, "CANCEL_REQUEST_TIMEOUT", initiator="BUYER")


EVENTS = {
    "BUYER_CANCEL_REQUESTED": buyer_cancel_requested,
    "SELLER_CANCEL_RESPONSE": seller_cancel_response,
    "SELLER_CANCELLED": seller_cancelled,
}
DEADLINES = {CANCEL_REQUEST_TIMEOUT: cancel_request_timeout}
