"""Replay scenarios for after-sales cases with their own lifecycle (TikTok Shop parity, part 2),
exact boundaries included."""
from __future__ import annotations

import pytest

from orderflow.streams.book.replay import Line
from orderflow.streams.analytics.facts import METRICS, replay_records
from orderflow.streams.lifecycle import Policy, contract
from support.orders import (DAY, HOUR, MIN, T0, after_sales, after_sales_resolved, case_response, confirmed, created,
                            delivered, lines, paid, refund_issued, return_received, return_shipped, seller_cancelled,
                            shipped, total)
from support.replays import replayed

POLICY = Policy.load()
ITEMS = lines(2)  # line 1: 1 x 10.00, line 2: 2 x 20.00
DELIVERED_AT = T0 + 2 * DAY


def delivered_order(order_id="o"):
    return [created(order_id, line_items=ITEMS, total_amount=total(ITEMS)), paid(order_id, T0 + MIN, total(ITEMS)),
            shipped(order_id, T0 + DAY), delivered(order_id, DELIVERED_AT)]


def run(events, until=T0 + 60 * DAY):
    return replayed(events, until, POLICY)


def case_path(outputs, case_id="c1"):
    """(at offset from delivery, FROM>TO:REASON) of the case's updates."""
    return [(o["at"] - DELIVERED_AT, f"{o['from_state']}>{o['to_state']}:{o['reason']}")
            for o in outputs if o["output"] == "case_update" and o["case_id"] == case_id]


def kinds(outputs):
    return [o["kind"] for o in outputs if o["output"] == "alert"]


def dead(outputs):
    return [o["reason"] for o in outputs if o["output"] == "dead_letter"]


def test_a_return_is_shipped_back_received_and_refunded():
    events = [*delivered_order(), after_sales("o", DELIVERED_AT + HOUR, "RETURN", case_id="c1", line_ids=["2"]),
              case_response("o", DELIVERED_AT + 2 * HOUR, "c1"), return_shipped("o", DELIVERED_AT + DAY, "c1"),
              return_received("o", DELIVERED_AT + 3 * DAY, "c1"), refund_issued("o", DELIVERED_AT + 4 * DAY, "c1", "40.00")]
    outputs, book = run(events)
    assert case_path(outputs) == [(HOUR, "None>REQUESTED:REQUESTED"), (2 * HOUR, "REQUESTED>APPROVED:ACCEPTED"),
                                  (DAY, "APPROVED>RETURN_SHIPPED:RETURN_SHIPPED"),
                                  (3 * DAY, "RETURN_SHIPPED>RETURN_RECEIVED:RETURN_RECEIVED"),
                                  (4 * DAY, "RETURN_RECEIVED>REFUNDED:REFUND_ISSUED")]
    refunded = [o for o in outputs if o.get("to_state") == "REFUNDED"][0]
    assert refunded["amount"] == "40.00" and refunded["case_kind"] == "RETURN"
    case = book.orders["o"]["after_sales"][0]
    assert (case["state"], case["refunded"], case["line_ids"]) == ("REFUNDED", "40.00", ["2"])
    assert case["returned"] == {"carrier": "Evri", "tracking_number": "EV1", "shipped_at": DELIVERED_AT + DAY}
    assert "AFTER_SALES_OPEN" not in book.orders["o"]["conditions"]
    assert not dead(outputs)


def test_an_unanswered_case_is_approved_at_exactly_48_hours():
    opened = DELIVERED_AT + HOUR
    events = [*delivered_order(), after_sales("o", opened, "REFUND", case_id="c1")]
    before, _ = run(events, until=opened + 48 * HOUR - 1)
    assert case_path(before)[-1][1] == "None>REQUESTED:REQUESTED"
    outputs, _ = run(events, until=opened + 48 * HOUR)
    assert case_path(outputs)[-1] == (HOUR + 48 * HOUR, "REQUESTED>APPROVED:AUTO_APPROVED")
    assert kinds(outputs)[-1] == "AFTER_SALES_AUTO_APPROVED"
    # An answer after that finds the case approved already.
    late, _ = run([*events, case_response("o", opened + 48 * HOUR, "c1", "REJECT")], until=opened + 48 * HOUR)
    assert dead(late) == ["after-sales case c1 is APPROVED, not awaiting an answer"]


def test_an_answer_a_millisecond_before_48_hours_is_in_time():
    opened = DELIVERED_AT + HOUR
    events = [*delivered_order(), after_sales("o", opened, "REFUND", case_id="c1"),
              case_response("o", opened + 48 * HOUR - 1, "c1", "REJECT")]
    outputs, book = run(events)
    assert case_path(outputs)[-1] == (HOUR + 48 * HOUR - 1, "REQUESTED>REJECTED:REJECTED")
    assert "AFTER_SALES_AUTO_APPROVED" not in kinds(outputs)
    assert "AFTER_SALES_OPEN" not in book.orders["o"]["conditions"]


def test_a_return_never_shipped_back_closes_the_case_after_the_return_window():
    approved = DELIVERED_AT + 2 * HOUR
    events = [*delivered_order(), after_sales("o", DELIVERED_AT + HOUR, "RETURN", case_id="c1"),
              case_response("o", approved, "c1")]
    outputs, book = run(events, until=approved + 7 * DAY)
    assert case_path(outputs)[-1] == (2 * HOUR + 7 * DAY, "APPROVED>CLOSED:RETURN_NOT_SHIPPED")
    assert kinds(outputs)[-1] == "RETURN_NOT_SHIPPED"
    shipped_late, _ = run([*events, return_shipped("o", approved + 7 * DAY + 1, "c1")])
    assert dead(shipped_late) == ["after-sales case c1 (RETURN, CLOSED) does not await a return"]
    in_time, _ = run([*events, return_shipped("o", approved + 7 * DAY - 1, "c1")])
    assert case_path(in_time)[-1][1] == "APPROVED>RETURN_SHIPPED:RETURN_SHIPPED"


def test_a_refund_never_exceeds_what_the_case_s_lines_cost():
    base = [*delivered_order(), after_sales("o", DELIVERED_AT + HOUR, "REFUND", case_id="c1", line_ids=["1"]),
            case_response("o", DELIVERED_AT + 2 * HOUR, "c1")]
    outputs, book = run([*base, refund_issued("o", DELIVERED_AT + 3 * HOUR, "c1", "10.01")])
    assert dead(outputs) == ["a refund of 10.01 is more than the 10.00 the case's lines cost"]
    assert book.orders["o"]["after_sales"][0]["state"] == "APPROVED"
    outputs, book = run([*base, refund_issued("o", DELIVERED_AT + 3 * HOUR, "c1", "10.00")])
    assert case_path(outputs)[-1][1] == "APPROVED>REFUNDED:REFUND_ISSUED"


def test_a_line_has_one_open_case_an_order_several_and_a_refunded_line_none_again():
    at = DELIVERED_AT + HOUR
    events = [*delivered_order(), after_sales("o", at, "REFUND", case_id="c1", line_ids=["1"]),
              after_sales("o", at + MIN, "EXCHANGE", case_id="c2", line_ids=["2"]),
              after_sales("o", at + 2 * MIN, "RETURN", case_id="c3", line_ids=["1", "2"]),
              case_response("o", at + HOUR, "c1"), refund_issued("o", at + 2 * HOUR, "c1", "10.00"),
              after_sales("o", at + 3 * HOUR, "REFUND", case_id="c4", line_ids=["1"]),
              after_sales_resolved("o", at + 4 * HOUR, "APPROVED")]
    outputs, book = run(events)
    assert dead(outputs) == ["line 1, 2 has an open after-sales case already", "line 1 was refunded already"]
    assert [(c["case_id"], c["state"]) for c in book.orders["o"]["after_sales"]] == [("c1", "REFUNDED"),
                                                                                   ("c2", "CLOSED")]


def test_resolving_without_naming_the_case_needs_a_single_open_one():
    at = DELIVERED_AT + HOUR
    events = [*delivered_order(), after_sales("o", at, "REPAIR", case_id="c1", line_ids=["1"]),
              after_sales("o", at + MIN, "REPAIR", case_id="c2", line_ids=["2"]),
              after_sales_resolved("o", at + 2 * MIN, "COMPLETED"),
              after_sales_resolved("o", at + 3 * MIN, "COMPLETED", case_id="c2"),
              after_sales_resolved("o", at + 4 * MIN, "COMPLETED")]
    outputs, book = run(events)
    assert dead(outputs) == ["name the case (case_id): 2 cases are open"]
    assert [(c["case_id"], c["state"]) for c in book.orders["o"]["after_sales"]] == [("c1", "CLOSED"),
                                                                                   ("c2", "CLOSED")]
    assert kinds(outputs)[-2:] == ["AFTER_SALES_RESOLVED", "AFTER_SALES_RESOLVED"]


def test_a_completed_order_takes_cases_within_the_window_after_delivery_only():
    window = POLICY.default.after_sales_window
    base = [*delivered_order(), confirmed("o", DELIVERED_AT + HOUR)]
    outputs, _ = run([*base, after_sales("o", DELIVERED_AT + window, "REFUND", case_id="c1")])
    assert case_path(outputs)[0][1] == "None>REQUESTED:REQUESTED"
    outputs, _ = run([*base, after_sales("o", DELIVERED_AT + window + 1, "REFUND", case_id="c1")])
    assert dead(outputs) == [f"the after-sales window of {window // DAY} days after delivery is over"]


def test_cases_and_refunds_are_counted_by_kind_and_reason_in_analytics():
    events = [*delivered_order(), after_sales("o", DELIVERED_AT + HOUR, "REFUND", case_id="c1", line_ids=["2"]),
              case_response("o", DELIVERED_AT + 2 * HOUR, "c1"), refund_issued("o", DELIVERED_AT + 3 * HOUR, "c1", "35.50")]
    assert "after_sales_refunded" in METRICS
    rows = [m for m in replay_records((Line(n, e) for n, e in enumerate(events, 1)), T0 + 10 * DAY, POLICY)
            if m["metric"] == "after_sales_refunded" and m["granularity"] == "DAY" and m["shop_id"] is None]
    assert rows[-1]["dimension"] == "GBP:REFUND:DAMAGED" and rows[-1]["value"] == "35.50"
    records = list(replay_records((Line(n, e) for n, e in enumerate(events, 1)), T0 + 10 * DAY, POLICY))
    rates = [m for m in records if m["metric"] == "after_sales_rate_by_reason" and m["granularity"] == "DAY"
             and m["shop_id"] is None]
    assert (rates[-1]["dimension"], float(rates[-1]["value"])) == ("REFUND:DAMAGED", 1.0)  # 1 case, 1 delivered


def test_refunds_never_exceed_what_was_paid_after_cancelled_lines_and_other_cases():
    """Paid 45.00 for lines worth 50.00 (a voucher); line 2 cancelled before shipping (40.00 refunded):
    5.00 is left for a refund of line 1."""
    events = [created("o", line_items=ITEMS, total_amount="45.00"), paid("o", T0 + MIN, "45.00"),
              seller_cancelled("o", T0 + HOUR, line_ids=["2"]), shipped("o", T0 + DAY), delivered("o", DELIVERED_AT),
              after_sales("o", DELIVERED_AT + HOUR, "REFUND", case_id="c1"), case_response("o", DELIVERED_AT + 2 * HOUR, "c1")]
    outputs, _ = run([*events, refund_issued("o", DELIVERED_AT + 3 * HOUR, "c1", "10.00")])
    assert dead(outputs) == ["a refund of 10.00 is more than the 5.00 left of the 45.00 paid (after what was "
                             "refunded already)"]
    outputs, _ = run([*events, refund_issued("o", DELIVERED_AT + 3 * HOUR, "c1", "5.00")])
    assert case_path(outputs)[-1][1] == "APPROVED>REFUNDED:REFUND_ISSUED"


def test_a_return_or_refund_resolved_as_approved_counts_its_lines_refunded():
    at = DELIVERED_AT + HOUR
    events = [*delivered_order(), after_sales("o", at, "REFUND", case_id="c1", line_ids=["1"]),
              after_sales_resolved("o", at + HOUR, "APPROVED", case_id="c1"),
              after_sales("o", at + 2 * HOUR, "REFUND", case_id="c2", line_ids=["1"]),
              after_sales("o", at + 3 * HOUR, "REPAIR", case_id="c3", line_ids=["2"]),
              after_sales_resolved("o", at + 4 * HOUR, "COMPLETED", case_id="c3"),
              after_sales("o", at + 5 * HOUR, "RETURN", case_id="c4", line_ids=["2"])]
    outputs, _ = run(events)
    assert dead(outputs) == ["line 1 was refunded already"]  # a repaired line may still be returned
    assert case_path(outputs, "c4")[0] == (5 * HOUR + HOUR, "None>REQUESTED:REQUESTED")


@pytest.mark.parametrize("made, problem", [
    (refund_issued("o", T0, "c1", "0"), "amount must be a decimal string above 0"),
    (refund_issued("o", T0, "c1", "0.00") | {"amount": 5}, "amount must be a decimal string above 0"),
    (after_sales("o", T0, case_id=""), "case_id must be text"),
    (delivered("o", T0) | {"case_id": "c1"}, "case_id is for the after-sales events only"),
    (after_sales("o", T0) | {"event_id": 12345}, "event_id must be text"),
])
def test_bad_after_sales_events_are_refused_by_the_contract(made, problem):
    assert contract.problem(made) == problem
