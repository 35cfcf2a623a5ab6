"""After delivery: confirmation (by the buyer or automatic) and reviews (after-sales cases: after_sales.py)."""
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


EVENTS = {
    "BUYER_CONFIRMED_RECEIPT": buyer_confirmed_receipt,
    "REVIEW_POSTED": review_posted,
}
DEADLINES = {AUTO_CONFIRM: auto_confirm}
