"""One replay scenario per row of DOMAIN.md's outputs table (and the open conditions)."""
from __future__ import annotations

import pytest

from orderflow.streams.lifecycle import Policy
from support.orders import (DAY, HOUR, MIN, T0, after_sales, after_sales_resolved, cancel_request, cancel_response,
                            confirmed, created, delivered, early_policy, event, failed, paid, redelivery, review,
                            seller_cancelled, shipped, update)
from support.replays import replayed, summary

POLICY = Policy.load()


def run(events, until=T0 + 60 * DAY, policy=POLICY):
    return replayed(events, until, policy)


CREATED = (0, "None>UNPAID:CREATED")
R15, R16 = (15 * MIN, "reminder:PAYMENT_REMINDER_15M"), (16 * HOUR, "reminder:PAYMENT_REMINDER_16H")


def test_created_unpaid_gets_both_reminders_then_is_cancelled_at_48h():
    outputs, book = run([created("o")])
    assert summary(outputs) == [CREATED, R15, R16, (48 * HOUR, "UNPAID>CANCELLED:UNPAID_TIMEOUT")]
    assert outputs[-1]["initiator"] == "SYSTEM"
    # Nothing is pending but the end of its retention: kept 90 days after it was cancelled.
    assert book.orders["o"]["deadlines"] == {"FORGET": T0 + 48 * HOUR + 90 * DAY}


def test_paid_before_reminders_stops_them_and_the_cancel():
    outputs, _ = run([created("o"), paid("o", T0 + 10 * MIN)], until=T0 + 71 * HOUR)
    assert summary(outputs) == [CREATED, (10 * MIN, "UNPAID>AWAITING_SHIPMENT:PAID")]


def test_paid_at_47h_is_not_cancelled():
    outputs, book = run([created("o"), paid("o", T0 + 47 * HOUR)], until=T0 + 50 * HOUR)
    assert summary(outputs) == [CREATED, R15, R16, (47 * HOUR, "UNPAID>AWAITING_SHIPMENT:PAID")]
    assert book.orders["o"]["status"] == "AWAITING_SHIPMENT"


def test_timer_at_exactly_the_deadline_fires_and_a_millisecond_before_does_not():
    assert summary(run([created("o")], until=T0 + 48 * HOUR - 1)[0])[-1] == R16
    assert summary(run([created("o")], until=T0 + 48 * HOUR)[0])[-1][1] == "UNPAID>CANCELLED:UNPAID_TIMEOUT"


def test_full_happy_path_to_buyer_confirmation():
    events = [created("o"), paid("o", T0 + 5 * MIN), shipped("o", T0 + DAY), update("o", T0 + DAY + HOUR, "COLLECTED"),
              update("o", T0 + 2 * DAY), delivered("o", T0 + 3 * DAY), confirmed("o", T0 + 4 * DAY)]
    outputs, book = run(events)
    assert summary(outputs) == [
        CREATED, (5 * MIN, "UNPAID>AWAITING_SHIPMENT:PAID"), (DAY, "AWAITING_SHIPMENT>AWAITING_COLLECTION:SHIPPED"),
        (DAY + HOUR, "AWAITING_COLLECTION>IN_TRANSIT:COLLECTED"), (3 * DAY, "IN_TRANSIT>DELIVERED:DELIVERED"),
        (4 * DAY, "DELIVERED>COMPLETED:BUYER_CONFIRMED"),
    ]
    order = book.orders["o"]
    assert [t["status"] for t in order["tracking"]] == ["SHIPPED", "COLLECTED", "IN_TRANSIT", "DELIVERED"]
    assert order["tracking"][1]["location"] == "Leeds hub"
    assert [(p["package_id"], p["carrier"], p["tracking_number"], p["status"]) for p in order["packages"]] == [
        ("1", "Royal Mail", "RM123", "DELIVERED")]
    # Kept through its 15-day after-sales window, then 90 days more.
    assert order["deadlines"] == {"FORGET": T0 + 4 * DAY + 15 * DAY + 90 * DAY}


def test_delivered_without_confirmation_is_auto_confirmed_after_the_policy_period():
    events = [created("o"), paid("o", T0 + MIN), shipped("o", T0 + DAY), delivered("o", T0 + 2 * DAY)]
    rows = summary(run(events)[0])
    assert rows[-1] == (2 * DAY + 7 * DAY, "DELIVERED>COMPLETED:AUTO_CONFIRMED")


def test_not_handed_over_in_72h_raises_ship_by_overdue_and_marks_late_dispatch():
    outputs, book = run([created("o"), paid("o", T0 + HOUR)], until=T0 + HOUR + 72 * HOUR)
    assert summary(outputs)[-1] == (HOUR + 72 * HOUR, "alert:SHIP_BY_OVERDUE")
    order = book.orders["o"]
    assert "LATE_DISPATCH" in order["conditions"] and order["late_dispatched"] is True
    # Shipping late closes the open condition but the order stays marked late-dispatched.
    outputs, book = run([created("o"), paid("o", T0 + HOUR), shipped("o", T0 + 4 * DAY)], until=T0 + 4 * DAY)
    assert "LATE_DISPATCH" not in book.orders["o"]["conditions"] and book.orders["o"]["late_dispatched"]


def test_shipped_in_time_raises_no_alert():
    outputs, _ = run([created("o"), paid("o", T0 + HOUR), shipped("o", T0 + 73 * HOUR - 1)], until=T0 + 5 * DAY)
    assert "alert:SHIP_BY_OVERDUE" not in [what for _, what in summary(outputs)]


def test_cancel_request_unanswered_in_48h_cancels():
    events = [created("o"), paid("o", T0 + MIN), cancel_request("o", T0 + HOUR)]
    outputs, book = run(events, until=T0 + 49 * HOUR)
    rows = summary(outputs)
    assert rows[-2:] == [(HOUR, "alert:CANCEL_REQUESTED"), (49 * HOUR, "AWAITING_SHIPMENT>CANCELLED:CANCEL_REQUEST_TIMEOUT")]
    assert book.orders["o"]["cancel_initiator"] == "BUYER"


def test_cancel_request_accepted_cancels_and_rejected_continues_without_timeout():
    base = [created("o"), paid("o", T0 + MIN), cancel_request("o", T0 + HOUR)]
    rows = summary(run(base + [cancel_response("o", T0 + 2 * HOUR, "ACCEPT")])[0])
    assert rows[-1] == (2 * HOUR, "AWAITING_SHIPMENT>CANCELLED:BUYER_REQUEST_ACCEPTED")
    outputs, book = run(base + [cancel_response("o", T0 + 2 * HOUR, "REJECT")], until=T0 + 60 * HOUR)
    assert summary(outputs)[-1] == (HOUR, "alert:CANCEL_REQUESTED")
    assert book.orders["o"]["status"] == "AWAITING_SHIPMENT" and book.orders["o"]["conditions"] == {}


def test_answer_before_the_timeout_wins_even_when_a_tick_for_it_is_pending():
    events = [created("o"), paid("o", T0 + MIN), cancel_request("o", T0 + HOUR),
              cancel_response("o", T0 + 49 * HOUR - 1, "REJECT")]
    outputs, book = run(events, until=T0 + 50 * HOUR)
    assert "CANCEL_REQUEST_TIMEOUT" not in str(summary(outputs))
    assert book.fire("o", T0 + 60 * HOUR) == []  # a late tick for the old deadline changes nothing


def test_seller_cancels_unpaid_or_paid_orders_with_their_reason_kept():
    rows = summary(run([created("o"), seller_cancelled("o", T0 + MIN)])[0])
    assert rows == [CREATED, (MIN, "UNPAID>CANCELLED:SELLER_CANCELLED")]
    outputs, book = run([created("o"), paid("o", T0 + MIN), seller_cancelled("o", T0 + HOUR)])
    assert summary(outputs)[-1] == (HOUR, "AWAITING_SHIPMENT>CANCELLED:SELLER_CANCELLED")
    assert book.orders["o"]["cancel_detail"] == "OUT_OF_STOCK"


def _failed_delivery():
    return [created("o"), paid("o", T0 + MIN), shipped("o", T0 + DAY), update("o", T0 + 2 * DAY),
            failed("o", T0 + 3 * DAY)]


def test_failed_delivery_without_redelivery_request_in_7_days_cancels_for_logistics_failure():
    outputs, book = run(_failed_delivery())
    assert summary(outputs)[-3:] == [
        (3 * DAY, "alert:DELIVERY_FAILED"), (10 * DAY, "alert:REDELIVERY_WINDOW_EXPIRED"),
        (10 * DAY, "IN_TRANSIT>CANCELLED:LOGISTICS_FAILURE"),
    ]
    assert book.orders["o"]["status"] == "CANCELLED"


def test_redelivery_with_no_progress_in_2_business_days_alerts():
    # Failure on Saturday 21 Nov 2026; request the same Saturday: Mon and Tue are the 2 business days.
    events = _failed_delivery() + [redelivery("o", T0 + 3 * DAY + HOUR)]
    outputs, book = run(events, until=T0 + 10 * DAY)
    due = summary(outputs)[-1]
    assert due == (6 * DAY + HOUR, "alert:REDELIVERY_DISPATCH_OVERDUE")
    assert book.orders["o"]["shipping_address"]["line1"] == "2 High Street"
    assert "alert:REDELIVERY_WINDOW_EXPIRED" not in str(summary(outputs))


def test_redelivery_business_days_skip_public_holidays():
    christmas_eve = 1_798_106_400_000  # Thu 2026-12-24 10:00 London
    events = [created("o", christmas_eve - 3 * DAY), paid("o", christmas_eve - 3 * DAY + MIN),
              shipped("o", christmas_eve - 2 * DAY), failed("o", christmas_eve - DAY), redelivery("o", christmas_eve)]
    outputs, _ = run(events, until=christmas_eve + 10 * DAY)
    overdue = [o for o in outputs if o.get("kind") == "REDELIVERY_DISPATCH_OVERDUE"]
    # 25 Dec and 28 Dec (Boxing Day substitute) are holidays, 26-27 a weekend: due Wed 30 Dec 10:00.
    assert [o["at"] for o in overdue] == [christmas_eve + 6 * DAY]


def test_redelivery_progress_in_time_raises_no_alert_and_delivery_completes():
    events = _failed_delivery() + [redelivery("o", T0 + 3 * DAY + HOUR), update("o", T0 + 4 * DAY),
                                   delivered("o", T0 + 5 * DAY), confirmed("o", T0 + 5 * DAY + HOUR)]
    outputs, book = run(events)
    kinds = str(summary(outputs))
    assert "REDELIVERY_DISPATCH_OVERDUE" not in kinds and "LOGISTICS_FAILURE" not in kinds
    assert book.orders["o"]["status"] == "COMPLETED" and book.orders["o"]["conditions"] == {}


def test_payment_after_auto_cancel_raises_payment_after_cancel_and_keeps_status():
    outputs, book = run([created("o"), paid("o", T0 + 49 * HOUR)])
    assert summary(outputs)[-2:] == [(48 * HOUR, "UNPAID>CANCELLED:UNPAID_TIMEOUT"),
                                    (49 * HOUR, "alert:PAYMENT_AFTER_CANCEL")]
    assert book.orders["o"]["status"] == "CANCELLED" and book.orders["o"]["refund_due"] == "19.98"


@pytest.mark.parametrize("make, status", [
    (lambda: [created("o"), shipped("o", T0 + HOUR)], "UNPAID"),
    (lambda: [created("o"), delivered("o", T0 + HOUR)], "UNPAID"),
    (lambda: [created("o"), paid("o", T0 + MIN), confirmed("o", T0 + HOUR)], "AWAITING_SHIPMENT"),
    (lambda: [created("o"), paid("o", T0 + MIN), paid("o", T0 + HOUR)], "AWAITING_SHIPMENT"),
    (lambda: [created("o"), seller_cancelled("o", T0 + MIN), shipped("o", T0 + HOUR)], "CANCELLED"),
    (lambda: [created("o"), paid("o", T0 + MIN), cancel_response("o", T0 + HOUR, "ACCEPT")], "AWAITING_SHIPMENT"),
    (lambda: [created("o"), paid("o", T0 + MIN), redelivery("o", T0 + HOUR)], "AWAITING_SHIPMENT"),
])
def test_an_event_the_status_does_not_allow_is_dead_lettered_and_changes_nothing(make, status):
    events = make()
    before, _ = run(events[:-1], until=T0 + HOUR - 1)
    outputs, book = run(events, until=T0 + HOUR)
    dead = outputs[len(before):]
    assert [o["output"] for o in dead] == ["dead_letter"]
    assert dead[0]["event"] == events[-1] and dead[0]["reason"]
    assert book.orders["o"]["status"] == status
    assert book.tally["dead_lettered"] == 1 and book.tally["applied"] == len(events) - 1


def test_shipping_while_a_cancellation_request_is_pending_is_refused():
    outputs, _ = run([created("o"), paid("o", T0 + MIN), cancel_request("o", T0 + HOUR), shipped("o", T0 + 2 * HOUR)])
    assert "answer the pending cancellation request" in [o for o in outputs if o["output"] == "dead_letter"][0]["reason"]


def test_a_shipped_parcel_without_logistics_updates_raises_a_stalled_alert():
    events = [created("o"), paid("o", T0 + MIN), shipped("o", T0 + DAY), update("o", T0 + 2 * DAY)]
    rows = summary(run(events, until=T0 + 10 * DAY)[0])
    assert rows[-1] == (2 * DAY + 5 * DAY, "alert:SHIPMENT_STALLED")
    # Each update re-arms the clock: updates every 4 days never stall.
    events += [update("o", T0 + 6 * DAY), update("o", T0 + 10 * DAY)]
    assert "SHIPMENT_STALLED" not in str(summary(run(events, until=T0 + 14 * DAY)[0]))


def test_reviews_and_after_sales_cases_are_recorded_and_published():
    events = [created("o"), paid("o", T0 + MIN), shipped("o", T0 + DAY), delivered("o", T0 + 2 * DAY),
              review("o", T0 + 2 * DAY + HOUR, rating=4), after_sales("o", T0 + 3 * DAY, "REFUND"),
              confirmed("o", T0 + 3 * DAY + HOUR), after_sales_resolved("o", T0 + 4 * DAY, "APPROVED")]
    outputs, book = run(events)
    notices = [(o["kind"], o["detail"]) for o in outputs if o["output"] == "alert"]
    assert notices[0][0] == "AFTER_SALES_OPENED" and notices[0][1]["case_kind"] == "REFUND"
    assert notices[1][0] == "AFTER_SALES_RESOLVED" and notices[1][1]["outcome"] == "APPROVED"
    order = book.orders["o"]
    assert order["reviews"] == [{"at": T0 + 2 * DAY + HOUR, "rating": 4, "comment": "great"}]
    assert order["after_sales"][0]["kind"] == "REFUND" and order["after_sales"][0]["outcome"] == "APPROVED"
    assert order["status"] == "COMPLETED" and order["conditions"] == {}


def test_events_before_their_order_is_created_are_held_then_applied_in_event_time_order():
    events = [paid("o", T0 + 10 * MIN), created("o")]
    outputs, book = run(events, until=T0 + HOUR)
    assert summary(outputs) == [CREATED, (10 * MIN, "UNPAID>AWAITING_SHIPMENT:PAID")]
    assert book.tally == {"in": 2, "applied": 2, "buffered": 0}


def test_events_whose_order_never_appears_are_dead_lettered_after_the_grace_period():
    outputs, book = run([paid("ghost", T0), shipped("ghost", T0 + MIN)], until=T0 + 2 * HOUR)
    assert [o["output"] for o in outputs] == ["dead_letter", "dead_letter"]
    assert all("never appeared" in o["reason"] for o in outputs)
    assert outputs[0]["at"] == T0 + HOUR  # the grace period runs from the first held event
    assert "ghost" not in book.orders
    assert book.tally["in"] == book.tally["dead_lettered"] == 2


def test_a_repeated_event_id_changes_nothing():
    first = created("o")
    outputs, book = run([first, dict(first), paid("o", T0 + MIN), dict(first)], until=T0 + MIN)
    assert summary(outputs) == [CREATED, (MIN, "UNPAID>AWAITING_SHIPMENT:PAID")]
    assert book.tally["duplicates"] == 2


def test_contract_violations_are_dead_lettered_with_their_reason():
    bad = [
        event("ORDER_CREATED", "o", T0, region="GB"),
        event("TELEPORTED", "o", T0),
        event("ORDER_PAID", "o", "yesterday", amount="1", payment_method="CARD"),
        event("ORDER_PAID", "o", T0, amount="-5", payment_method="CARD"),
        event("REVIEW_POSTED", "o", T0, rating=9, comment="!"),
        event("SELLER_CANCEL_RESPONSE", "o", T0, decision="MAYBE"),
        created("o" * 10_000),
        created("o", region="ZZ"),
    ]
    outputs, book = run(bad)
    reasons = [o["reason"] for o in outputs]
    assert len(reasons) == len(bad) and all(o["output"] == "dead_letter" for o in outputs)
    assert "lacks shop_id" in reasons[0] and "unknown event_type" in reasons[1]
    assert "integer" in reasons[2] and "out of range" in reasons[3] and "rating" in reasons[4]
    assert "decision must be one of" in reasons[5] and "characters long" in reasons[6]
    assert "not served by the region policy" in reasons[7]
    assert book.orders == {} and book.tally == {"in": len(bad), "dead_lettered": len(bad)}


def test_region_policy_changes_durations_without_code():
    custom = early_policy(payment_reminders=["30m"], unpaid_timeout="2h")
    rows = summary(run([created("o")], policy=custom)[0])
    assert rows == [CREATED, (30 * MIN, "reminder:PAYMENT_REMINDER_30M"), (2 * HOUR, "UNPAID>CANCELLED:UNPAID_TIMEOUT")]


def test_output_ids_are_deterministic_and_unique():
    events = [created("o"), paid("o", T0 + 47 * HOUR), shipped("o", T0 + 5 * DAY)]
    first, second = run(events)[0], run(events)[0]
    ids = [o["output_id"] for o in first]
    assert ids == [o["output_id"] for o in second] and len(set(ids)) == len(ids)
