"""After-sales cases: returns, refunds, exchanges and repairs, each with its own states and deadlines.

A case covers some lines of a delivered order (every line by default); a line
has at most one open case, an order may have several. The seller answers
within the policy's `after_sales_response` or the case is approved; a return
is shipped back within `return_ship_window` of its approval or the case closes;
a refund never exceeds what was paid for the case's lines. Every transition
is a `case_update` output (order-after-sales topic).

    REQUESTED -> APPROVED | REJECTED
    APPROVED -> RETURN_SHIPPED -> RETURN_RECEIVED -> REFUNDED   (RETURN: return and refund)
    APPROVED -> REFUNDED                                        (REFUND: refund only)
    any open state -> CLOSED by AFTER_SALES_RESOLVED (EXCHANGE and REPAIR end so), or by the
    return window (APPROVED, never shipped back)

Cases stored before states came in have none: an open one reads as REQUESTED.
"""
from __future__ import annotations

from decimal import Decimal

from . import lines
from . import status as st
from .order import Change, deadline_for, deadline_owner, index_of

REQUESTED, APPROVED, REJECTED = "REQUESTED", "APPROVED", "REJECTED"
RETURN_SHIPPED, RETURN_RECEIVED, REFUNDED, CLOSED = "RETURN_SHIPPED", "RETURN_RECEIVED", "REFUNDED", "CLOSED"
FINAL = frozenset({REJECTED, REFUNDED, CLOSED})
RESPONSE_DUE, RETURN_DUE = st.CASE_DEADLINES  # + ":" + case id: one deadline per case
_RECEIVED = (st.DELIVERED, st.COMPLETED)
_REFUNDED_FROM = {"RETURN": RETURN_RECEIVED, "REFUND": APPROVED}


def state(case: dict) -> str:
    return case.get("state") or (CLOSED if "outcome" in case else REQUESTED)


def awaits_seller(case: dict) -> bool:
    """Is it the seller's turn: an answer, a refund, or a replacement or repair to send? (An approved
    return waits for the buyer, a return on its way for the carrier.)"""
    now = state(case)
    return now == REQUESTED or now == RETURN_RECEIVED or (now == APPROVED and case["kind"] != "RETURN")


def refunded_lines(order: dict) -> set[str]:
    """Lines refunded by a case: REFUNDED, or a return or refund closed as APPROVED or COMPLETED by
    AFTER_SALES_RESOLVED (as every case of the version before states ended)."""
    every = lines.line_ids(order)
    return {line for case in order.get("after_sales") or ()
            if state(case) == REFUNDED or (state(case) == CLOSED and case["kind"] in ("RETURN", "REFUND")
                                           and case.get("outcome") in ("APPROVED", "COMPLETED"))
            for line in case.get("line_ids") or every}


def refunded_amount(order: dict) -> Decimal:
    """What was refunded so far: lines the seller cancelled, and cases refunded."""
    return (sum((Decimal(line["amount"]) for line in lines.cancelled(order).values()), Decimal(0))
            + sum((Decimal(case["refunded"]) for case in order.get("after_sales") or () if "refunded" in case),
                  Decimal(0)))


def payment_left(order: dict) -> Decimal | None:
    """What is left of the payment after what was refunded (None: not paid)."""
    paid = order.get("paid_amount")
    return None if paid is None else Decimal(paid) - refunded_amount(order)


def refund_for(order: dict, ids) -> Decimal:
    """What to refund for the lines `ids` given up now: their cost, but never more than is left of
    the payment (a voucher may have paid part of the order)."""
    cost, left = lines.amount(order, ids), payment_left(order)
    return cost if left is None else min(cost, max(left, Decimal(0)))


def open_cases(order: dict) -> list[dict]:
    return [case for case in order.get("after_sales") or () if state(case) not in FINAL]


def _case(change: Change, event: dict) -> tuple[int, dict]:
    """The case the event names (`case_id`), or the only open one when it names none."""
    cases = change.order["after_sales"]
    wanted = event.get("case_id")
    if wanted is None:
        opened = [n for n, case in enumerate(cases) if state(case) not in FINAL]
        change.require(len(opened) == 1, "name the case (case_id): {} cases are open", len(opened))
        return opened[0], cases[opened[0]]
    index = index_of(cases, "case_id", wanted)
    change.require(index is not None, "the order has no after-sales case {}", str(wanted)[:128])
    return index, cases[index]


def _due_case(change: Change, deadline: str, waiting: str) -> int | None:
    """The index of the case a deadline (KIND:case_id) is for, if the case still is `waiting`."""
    cases = change.order["after_sales"]
    index = index_of(cases, "case_id", deadline_owner(deadline))
    return index if index is not None and state(cases[index]) == waiting else None


def _move(change: Change, index: int, to: str, reason: str, **fields) -> dict:
    """The case at `index` goes to state `to` (a new case: to REQUESTED, from none): stored, published,
    and the order's condition kept true."""
    cases = change.edit("after_sales")
    case = cases[index]
    cases[index] = moved = {**case, "state": to, "updated_at": change.at, **fields}
    before = None if to == REQUESTED else state(case)
    change.emit("case_update", case_id=moved["case_id"], case_kind=moved["kind"], from_state=before, to_state=to,
                reason=reason, amount=fields.get("refunded"))
    still_open = open_cases(change.order)
    if still_open:
        latest = still_open[-1]
        change.open_condition(st.AFTER_SALES_OPEN, case_id=latest["case_id"], kind=latest["kind"])
    else:
        change.close_condition(st.AFTER_SALES_OPEN)
    return moved


def after_sales_requested(change: Change, event: dict) -> None:
    change.require_status("AFTER_SALES_REQUESTED", *_RECEIVED)
    delivered_at = change.order.get("delivered_at")
    if change.status == st.COMPLETED and delivered_at is not None:
        change.require(change.at <= delivered_at + change.rules.after_sales_window,
                       "the after-sales window of {} days after delivery is over",
                       change.rules.after_sales_window // 86_400_000)
    case_id = event.get("case_id") or event["event_id"]
    change.require(all(case["case_id"] != case_id for case in change.order["after_sales"]),
                   "after-sales case {} exists already", case_id[:128])
    known = lines.open_line_ids(change.order)  # a line cancelled before shipping was never delivered
    wanted = event.get("line_ids") or known
    change.forbid(lines.unknown(wanted, known))
    busy = sorted({line for case in open_cases(change.order) for line in case.get("line_ids") or known} & set(wanted))
    change.require(not busy, "line {} has an open after-sales case already", ", ".join(busy)[:200])
    refunded = sorted(refunded_lines(change.order) & set(wanted))
    change.require(not refunded, "line {} was refunded already", ", ".join(refunded)[:200])
    case = {"case_id": case_id, "kind": event["kind"], "reason": event["reason"], "opened_at": change.at,
            "line_ids": list(wanted)}
    change.edit("after_sales").append(case)
    _move(change, len(change.order["after_sales"]) - 1, REQUESTED, "REQUESTED")
    change.schedule(deadline_for(RESPONSE_DUE, case_id), change.at + change.rules.after_sales_response)
    change.notify("alert", "AFTER_SALES_OPENED", case_id=case_id, case_kind=event["kind"], reason=event["reason"])


def after_sales_response(change: Change, event: dict) -> None:
    index, case = _case(change, event)
    change.require(state(case) == REQUESTED, "after-sales case {} is {}, not awaiting an answer", case["case_id"],
                   state(case))
    change.cancel_deadlines(deadline_for(RESPONSE_DUE, case["case_id"]))
    if event["decision"] == "ACCEPT":
        _approve(change, index, "ACCEPTED", event.get("reason"))
    else:
        _move(change, index, REJECTED, "REJECTED", answer=event.get("reason"))


def _approve(change: Change, index: int, reason: str, answer: str | None = None) -> None:
    case = _move(change, index, APPROVED, reason, **({"answer": answer} if answer else {}))
    if case["kind"] == "RETURN":
        change.schedule(deadline_for(RETURN_DUE, case["case_id"]), change.at + change.rules.return_ship_window)


def response_due(change: Change, deadline: str) -> None:
    """Unanswered in time: the platform approves the case."""
    index = _due_case(change, deadline, REQUESTED)
    if index is not None:
        _approve(change, index, "AUTO_APPROVED")
        case = change.order["after_sales"][index]
        change.notify("alert", "AFTER_SALES_AUTO_APPROVED", case_id=case["case_id"], case_kind=case["kind"])


def return_due(change: Change, deadline: str) -> None:
    """Approved, never shipped back in time: the case closes."""
    index = _due_case(change, deadline, APPROVED)
    if index is not None:
        case = _move(change, index, CLOSED, "RETURN_NOT_SHIPPED")
        change.notify("alert", "RETURN_NOT_SHIPPED", case_id=case["case_id"])


def return_shipped(change: Change, event: dict) -> None:
    index, case = _case(change, event)
    change.require(case["kind"] == "RETURN" and state(case) == APPROVED,
                   "after-sales case {} ({}, {}) does not await a return", case["case_id"], case["kind"], state(case))
    change.cancel_deadlines(deadline_for(RETURN_DUE, case["case_id"]))
    _move(change, index, RETURN_SHIPPED, "RETURN_SHIPPED",
          returned={"carrier": event["carrier"], "tracking_number": event["tracking_number"], "shipped_at": change.at})


def return_received(change: Change, event: dict) -> None:
    index, case = _case(change, event)
    change.require(state(case) == RETURN_SHIPPED, "after-sales case {} is {}, no return is on its way",
                   case["case_id"], state(case))
    _move(change, index, RETURN_RECEIVED, "RETURN_RECEIVED")


def refund_issued(change: Change, event: dict) -> None:
    index, case = _case(change, event)
    ready = _REFUNDED_FROM.get(case["kind"])
    change.require(state(case) == ready, "after-sales case {} ({}, {}) is not due a refund", case["case_id"],
                   case["kind"], state(case))
    cost = lines.amount(change.order, case.get("line_ids") or lines.open_line_ids(change.order))
    change.require(Decimal(event["amount"]) <= cost, "a refund of {} is more than the {} the case's lines cost",
                   event["amount"], cost)
    left = payment_left(change.order)
    if left is not None:
        change.require(Decimal(event["amount"]) <= left, "a refund of {} is more than the {} left of the {} paid "
                       "(after what was refunded already)", event["amount"], left, change.order["paid_amount"])
    _move(change, index, REFUNDED, "REFUND_ISSUED", refunded=event["amount"])


def after_sales_resolved(change: Change, event: dict) -> None:
    change.require(bool(open_cases(change.order)), "no after-sales case is open")
    index, case = _case(change, event)
    change.require(state(case) not in FINAL, "after-sales case {} is {} already", case["case_id"], state(case))
    for name in (RESPONSE_DUE, RETURN_DUE):
        change.cancel_deadlines(deadline_for(name, case["case_id"]))
    _move(change, index, CLOSED, event["outcome"], outcome=event["outcome"], resolved_at=change.at)
    change.notify("alert", "AFTER_SALES_RESOLVED", case_id=case["case_id"], case_kind=case["kind"],
                  outcome=event["outcome"])


EVENTS = {
    "AFTER_SALES_REQUESTED": after_sales_requested,
    "AFTER_SALES_RESPONSE": after_sales_response,
    "RETURN_SHIPPED": return_shipped,
    "RETURN_RECEIVED": return_received,
    "REFUND_ISSUED": refund_issued,
    "AFTER_SALES_RESOLVED": after_sales_resolved,
}
DEADLINES = {RESPONSE_DUE: response_due, RETURN_DUE: return_due}
