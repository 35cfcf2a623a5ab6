"""After delivery: confirmation (by the buyer or automatic), reviews, after-sales cases."""
from __future__ import annotations

from . import status as st
from .order import Change
from .shipping import AUTO_CONFIRM

_RECEIVED = (st.DELIVERED, st.COMPLETED)


def buyer_confirmed_receipt(change: Change, event: dict) -> None:
    change.require_status("BUYER_CONFIRMED_RECEIPT", st.DELIVERED)
    change.move(st.COMPLETED, "BUYER_CONFIRMED")


def auto_confirm(change: Change, deadline: str) -> None:
    if change.status == st.DELIVERED:
        change.move(st.COMPLETED, "AUTO_CONFIRMED")


def review_posted(change: Change, event: dict) -> None:
    change.require_status("REVIEW_POSTED", *_RECEIVED)
    change.require(not change.order["reviews"], "the order has been reviewed already")
    change.edit("reviews").append({"at": change.at, "rating": event["rating"], "comment": event["comment"]})


def after_sales_requested(change: Change, event: dict) -> None:
    change.require_status("AFTER_SALES_REQUESTED", *_RECEIVED)
    change.require(st.AFTER_SALES_OPEN not in change.order["conditions"], "an after-sales case is already open")
    case = {"case_id": event["event_id"], "kind": event["kind"], "reason": event["reason"], "opened_at": change.at}
    change.edit("after_sales").append(case)
    change.open_condition(st.AFTER_SALES_OPEN, case_id=case["case_id"], kind=event["kind"])
    change.notify("alert", "AFTER_SALES_OPENED", case_id=case["case_id"], case_kind=event["kind"],
                  reason=event["reason"])


def after_sales_resolved(change: Change, event: dict) -> None:
    open_case = change.order["conditions"].get(st.AFTER_SALES_OPEN)
    change.require(open_case is not None, "no after-sales case is open")
    cases = change.edit("after_sales")
    cases[-1] = {**cases[-1], "outcome": event["outcome"], "resolved_at": change.at}
    change.close_condition(st.AFTER_SALES_OPEN)
    change.notify("alert", "AFTER_SALES_RESOLVED", case_id=open_case["case_id"], case_kind=open_case["kind"],
                  outcome=event["outcome"])


EVENTS = {
    "BUYER_CONFIRMED_RECEIPT": buyer_confirmed_receipt,
    "REVIEW_POSTED": review_posted,
    "AFTER_SALES_REQUESTED": after_sales_requested,
    "AFTER_SALES_RESOLVED": after_sales_resolved,
}
DEADLINES = {AUTO_CONFIRM: auto_confirm}
