"""Replay scenarios for the remorse hold, line-level cancellation, operator cancels and the
cancel reason catalogue (TikTok Shop parity, part 1), exact boundaries included."""
from __future__ import annotations

from decimal import Decimal

import pytest

from orderflow.streams.api.export import shown_address
from orderflow.streams.lifecycle import Policy, contract
from support.orders import (DAY, HOUR, MIN, T0, RecordingRoom, cancel_request, created, delivered, early_policy, event,
                            lines,
                            operator_cancelled, paid, policy_with, seller_cancelled, shipped, total, update)
from support.replays import replayed, summary

HELD = policy_with(GB='remorse_period = "1h"')  # the UK's hold since December 2023
PACKAGED = Policy.load()
PAID_AT = T0 + 10 * MIN
HOLD_ENDS = PAID_AT + HOUR


def run(events, until=T0 + 30 * DAY, policy=HELD):
    room = RecordingRoom()
    return *replayed(events, until, policy, room), room


def requests(room, action):
    return sorted((r["line"], r["at"] - T0) for r in room.requests if r["action"] == action)


CREATED = (0, "None>UNPAID:CREATED")
ON_HOLD = (10 * MIN, "UNPAID>ON_HOLD:PAID")
RELEASED = (70 * MIN, "ON_HOLD>AWAITING_SHIPMENT:REMORSE_PERIOD_ENDED")
THREE = lines(3)  # line ids 1, 2, 3: 1 x 10.00, 2 x 20.00, 3 x 30.00


def three_lines(order_id="o", **fields):
    return created(order_id, line_items=THREE, total_amount=total(THREE), **fields)


# --- the remorse hold ----------------------------------------------------------------------------------------

def test_a_paid_order_is_on_hold_for_the_period_then_awaits_shipment_and_its_ship_by_runs_from_then():
    outputs, book, _ = run([created("o"), paid("o", PAID_AT)], until=HOLD_ENDS + 72 * HOUR)
    assert summary(outputs) == [CREATED, ON_HOLD, RELEASED, (70 * MIN + 72 * HOUR, "alert:SHIP_BY_OVERDUE")]
    order = book.orders["o"]
    assert order["paid_at"] == PAID_AT  # the hold's end does not move the payment time
    assert order["history"][-1] == {"at": HOLD_ENDS, "from_status": "ON_HOLD", "to_status": "AWAITING_SHIPMENT",
                                    "reason": "REMORSE_PERIOD_ENDED"}


def test_the_ship_by_is_not_due_a_millisecond_before_72_hours_after_the_hold():
    outputs, _, _ = run([created("o"), paid("o", PAID_AT)], until=HOLD_ENDS + 72 * HOUR - 1)
    assert summary(outputs) == [CREATED, ON_HOLD, RELEASED]


def test_regions_without_a_hold_and_the_packaged_policy_keep_the_articles_flow():
    for policy, region in ((HELD, "SG"), (PACKAGED, "GB")):
        outputs, _, _ = run([created("o", region=region), paid("o", PAID_AT)], until=PAID_AT + HOUR, policy=policy)
        assert summary(outputs) == [CREATED, (10 * MIN, "UNPAID>AWAITING_SHIPMENT:PAID")]


def test_a_cancel_request_a_millisecond_before_the_hold_ends_cancels_at_once():
    outputs, book, room = run([created("o"), paid("o", PAID_AT), cancel_request("o", HOLD_ENDS - 1)])
    assert summary(outputs) == [CREATED, ON_HOLD, (70 * MIN - 1, "ON_HOLD>CANCELLED:BUYER_CANCELLED")]
    assert outputs[-1]["initiator"] == "BUYER" and "cancel_reason" not in outputs[-1]
    assert book.orders["o"]["cancel_detail"] == "CHANGED_MIND"  # the buyer's reason, as given
    assert requests(room, "RELEASE") == [(0, 70 * MIN - 1)]  # its reserved units go back


def test_a_cancel_request_when_the_hold_has_ended_waits_for_the_seller():
    outputs, book, _ = run([created("o"), paid("o", PAID_AT), cancel_request("o", HOLD_ENDS)], until=HOLD_ENDS)
    assert summary(outputs) == [CREATED, ON_HOLD, RELEASED, (70 * MIN, "alert:CANCEL_REQUESTED")]
    assert "CANCEL_REQUESTED" in book.orders["o"]["conditions"]


def test_shipping_during_the_hold_is_refused_and_a_millisecond_after_it_is_taken():
    outputs, _, _ = run([created("o"), paid("o", PAID_AT), shipped("o", HOLD_ENDS - 1)], until=HOLD_ENDS)
    assert summary(outputs)[-2:] == [
        (70 * MIN - 1, "dead_letter:PACKAGE_SHIPPED is not allowed in status ON_HOLD (only in AWAITING_SHIPMENT, "
             "PARTIALLY_SHIPPING)"),
        RELEASED]
    outputs, _, _ = run([created("o"), paid("o", PAID_AT), shipped("o", HOLD_ENDS + 1)], until=HOLD_ENDS + 1)
    assert summary(outputs)[-2:] == [RELEASED, (70 * MIN + 1, "AWAITING_SHIPMENT>AWAITING_COLLECTION:SHIPPED")]


def test_the_seller_may_cancel_during_the_hold():
    outputs, _, _ = run([created("o"), paid("o", PAID_AT), seller_cancelled("o", PAID_AT + MIN, "PRICE_ERROR")])
    assert summary(outputs)[-1] == (11 * MIN, "ON_HOLD>CANCELLED:SELLER_CANCELLED")
    assert (outputs[-1]["initiator"], outputs[-1]["cancel_reason"]) == ("SELLER", "PRICE_ERROR")


def test_a_seller_answer_during_the_hold_is_refused_there_being_no_request():
    outputs, _, _ = run([created("o"), paid("o", PAID_AT), event("SELLER_CANCEL_RESPONSE", "o", PAID_AT + MIN,
                                                                   decision="ACCEPT")], until=PAID_AT + MIN)
    assert summary(outputs)[-1] == (11 * MIN, "dead_letter:no cancellation request is pending")


# --- line-level cancellation ---------------------------------------------------------------------------------

def test_cancelling_some_lines_keeps_the_order_releases_their_holds_and_alerts_the_refund():
    events = [three_lines("o"), paid("o", PAID_AT, total(THREE)), seller_cancelled("o", HOLD_ENDS + HOUR, line_ids=["2"])]
    outputs, book, room = run(events, until=HOLD_ENDS + HOUR)
    alert = outputs[-1]
    assert summary(outputs)[-1] == (130 * MIN, "alert:LINES_CANCELLED")
    assert alert["detail"] == {"line_ids": "2", "amount": "40.00", "currency": "GBP", "reason": "OUT_OF_STOCK"}
    order = book.orders["o"]
    assert order["status"] == "AWAITING_SHIPMENT"
    assert order["cancelled_lines"] == {"2": {"at": HOLD_ENDS + HOUR, "reason": "OUT_OF_STOCK", "amount": "40.00"}}
    assert requests(room, "RESERVE") == [(0, 10 * MIN), (1, 10 * MIN), (2, 10 * MIN)]
    assert requests(room, "RELEASE") == [(1, 130 * MIN)]


def test_the_rest_ships_and_consumes_only_the_open_lines():
    events = [three_lines("o"), paid("o", PAID_AT, total(THREE)), seller_cancelled("o", HOLD_ENDS + HOUR, line_ids=["3", "1"]),
              shipped("o", HOLD_ENDS + 2 * HOUR)]
    outputs, _, room = run(events, until=HOLD_ENDS + 2 * HOUR)
    assert [o["detail"]["amount"] for o in outputs if o.get("kind") == "LINES_CANCELLED"] == ["100.00"]  # 10 + 90
    assert requests(room, "CONSUME") == [(1, 190 * MIN)]
    assert requests(room, "RELEASE") == [(0, 130 * MIN), (2, 130 * MIN)]


def test_cancelling_every_open_line_cancels_the_order_and_releases_only_what_is_still_held():
    events = [three_lines("o"), paid("o", PAID_AT, total(THREE)), seller_cancelled("o", HOLD_ENDS + HOUR, line_ids=["2"]),
              seller_cancelled("o", HOLD_ENDS + 2 * HOUR, line_ids=["1", "3"])]
    outputs, book, room = run(events, until=HOLD_ENDS + 2 * HOUR)
    assert summary(outputs)[-1] == (190 * MIN, "AWAITING_SHIPMENT>CANCELLED:SELLER_CANCELLED")
    assert outputs[-1]["cancel_reason"] == "OUT_OF_STOCK"
    assert requests(room, "RELEASE") == [(0, 190 * MIN), (1, 130 * MIN), (2, 190 * MIN)]  # each line once
    assert set(book.orders["o"]["cancelled_lines"]) == {"2"}


def test_cancelling_all_lines_by_id_is_cancelling_the_order():
    events = [three_lines("o"), paid("o", PAID_AT, total(THREE)), seller_cancelled("o", PAID_AT + MIN, line_ids=["1", "2", "3"])]
    outputs, _, _ = run(events, until=PAID_AT + MIN)
    assert summary(outputs)[-1] == (11 * MIN, "ON_HOLD>CANCELLED:SELLER_CANCELLED")
    assert not [o for o in outputs if o.get("kind") == "LINES_CANCELLED"]


def test_refused_line_cancellations_are_dead_letters_with_their_reason():
    at = HOLD_ENDS + HOUR
    cases = [
        ([three_lines("o")], ["1"], "SELLER_CANCELLED with line_ids is not allowed in status UNPAID "
                                    "(only in ON_HOLD, AWAITING_SHIPMENT, PARTIALLY_SHIPPING)"),
        ([three_lines("o"), paid("o", PAID_AT, total(THREE))], ["9"], "the order has no line 9 (its lines: 1, 2, 3)"),
        ([three_lines("o"), paid("o", PAID_AT, total(THREE)), seller_cancelled("o", at - 1, line_ids=["2"])], ["2", "3"],
         "line 2 is cancelled already"),
        ([three_lines("o"), paid("o", PAID_AT, total(THREE)), shipped("o", at - 1)], ["1"],
         "SELLER_CANCELLED with line_ids is not allowed in status AWAITING_COLLECTION (only in ON_HOLD, "
         "AWAITING_SHIPMENT, PARTIALLY_SHIPPING)"),
    ]
    for before, wanted, reason in cases:
        outputs, book, _ = run([*before, seller_cancelled("o", at, line_ids=wanted)], until=at)
        assert summary(outputs)[-1] == (at - T0, f"dead_letter:{reason}")


def test_line_ids_given_at_creation_name_the_lines():
    items = [{**item, "line_id": f"L{n}"} for n, item in enumerate(lines(2), 1)]
    events = [created("o", line_items=items, total_amount=total(items)), paid("o", PAID_AT),
              seller_cancelled("o", HOLD_ENDS + MIN, line_ids=["L2"])]
    outputs, book, _ = run(events, until=HOLD_ENDS + MIN)
    assert outputs[-1]["detail"]["line_ids"] == "L2" and set(book.orders["o"]["cancelled_lines"]) == {"L2"}


def test_a_stock_problem_of_only_the_cancelled_lines_closes_and_one_of_another_line_stays():
    stock = [event("STOCK_SET", "-", T0 - DAY, sku_id=sku, quantity=0) for sku in ("sku-2", "sku-3")]
    for item in stock:
        del item["order_id"]
    events = [*stock, three_lines("o"), paid("o", PAID_AT, total(THREE))]
    _, book, _ = run(events, until=HOLD_ENDS)
    assert set(book.orders["o"]["conditions"]["OUT_OF_STOCK"]["lines"]) == {"1", "2"}  # places 1 and 2 short
    _, book, _ = run([*events, seller_cancelled("o", HOLD_ENDS + MIN, line_ids=["2"])], until=HOLD_ENDS + MIN)
    assert set(book.orders["o"]["conditions"]["OUT_OF_STOCK"]["lines"]) == {"1", "2"}  # line 3 is still short
    _, book, _ = run([*events, seller_cancelled("o", HOLD_ENDS + MIN, line_ids=["2", "3"])], until=HOLD_ENDS + MIN)
    assert "OUT_OF_STOCK" not in book.orders["o"]["conditions"]


# --- operator cancels and the reason catalogue ---------------------------------------------------------------

def test_an_operator_cancels_an_order_on_its_way():
    events = [created("o"), paid("o", PAID_AT), shipped("o", HOLD_ENDS + HOUR), update("o", HOLD_ENDS + 2 * HOUR),
              operator_cancelled("o", HOLD_ENDS + 3 * HOUR, "FRAUD")]
    outputs, book, _ = run(events, until=HOLD_ENDS + 3 * HOUR)
    change = outputs[-1]
    assert summary(outputs)[-1] == (250 * MIN, "IN_TRANSIT>CANCELLED:OPERATOR_CANCELLED")
    assert (change["initiator"], change["cancel_reason"]) == ("OPERATOR", "FRAUD")
    assert (book.orders["o"]["cancel_initiator"], book.orders["o"]["cancel_detail"]) == ("OPERATOR", "FRAUD")


def test_an_operator_cannot_cancel_a_delivered_order():
    events = [created("o"), paid("o", PAID_AT), shipped("o", HOLD_ENDS + HOUR), delivered("o", HOLD_ENDS + DAY),
              operator_cancelled("o", HOLD_ENDS + 2 * DAY)]
    outputs, _, _ = run(events, until=HOLD_ENDS + 2 * DAY)
    assert summary(outputs)[-1][1] == ("dead_letter:OPERATOR_CANCELLED is not allowed in status DELIVERED (only in "
                                       "UNPAID, ON_HOLD, AWAITING_SHIPMENT, PARTIALLY_SHIPPING, AWAITING_COLLECTION, "
                                       "IN_TRANSIT)")


def test_a_reason_outside_the_catalogue_is_a_dead_letter_naming_the_allowed_ones():
    seller = HELD.for_region("GB").cancel_reasons["SELLER"]
    outputs, book, _ = run([created("o"), seller_cancelled("o", T0 + MIN, "BORED")], until=T0 + MIN)
    assert summary(outputs)[-1] == (MIN, f"dead_letter:cancel reason 'BORED' is not in the seller catalogue of "
                                         f"region GB (one of {', '.join(seller)})")
    assert book.orders["o"]["status"] == "UNPAID"
    outputs, _, _ = run([created("o"), operator_cancelled("o", T0 + MIN, "OUT_OF_STOCK")], until=T0 + MIN)
    assert "not in the operator catalogue" in summary(outputs)[-1][1]


def test_a_policy_without_a_catalogue_takes_any_reason():
    assert PACKAGED.for_region("GB").cancel_reasons is not None  # a policy file written before has none
    bare = early_policy()
    outputs, _, _ = run([created("o"), seller_cancelled("o", T0 + MIN, "BORED")], until=T0 + MIN, policy=bare)
    assert summary(outputs)[-1] == (MIN, "UNPAID>CANCELLED:SELLER_CANCELLED")
    assert bare.for_region("GB").remorse_period == 0


def test_the_packaged_catalogue_holds_every_reason_the_simulator_and_the_samples_give():
    from orderflow.streams.cli.sample import sample_events
    from orderflow.streams.cli.simulator import Simulator
    events = [*Simulator(seed=3, start=T0).events(5000), *sample_events(T0)]
    given = {kind: {e["reason"] for e in events if e["event_type"] == f"{kind}_CANCELLED"}
             for kind in ("SELLER", "OPERATOR")}
    for region in PACKAGED.regions.values():
        for kind, reasons in given.items():
            assert reasons and reasons <= set(region.cancel_reasons[kind]), (kind, reasons)


def test_a_refund_for_cancelled_lines_never_exceeds_what_is_left_of_the_payment():
    """A voucher paid part of the order: the lines' refunds stop at what the buyer paid."""
    events = [three_lines("o"), paid("o", PAID_AT, "50.00"), seller_cancelled("o", HOLD_ENDS + HOUR, line_ids=["2"]),
              seller_cancelled("o", HOLD_ENDS + 2 * HOUR, line_ids=["3"])]
    outputs, _, _ = run(events, until=HOLD_ENDS + 2 * HOUR)
    assert [o["detail"]["amount"] for o in outputs if o.get("kind") == "LINES_CANCELLED"] == ["40.00", "10.00"]


def test_amounts_are_exact_decimals():
    items = [{"sku_id": "s", "product_name": "p", "quantity": 3, "unit_price": "0.10"},
             {"sku_id": "t", "product_name": "q", "quantity": 1, "unit_price": "5"}]
    events = [created("o", line_items=items, total_amount=total(items)), paid("o", PAID_AT),
              seller_cancelled("o", HOLD_ENDS + MIN, line_ids=["1"])]
    outputs, _, _ = run(events, until=HOLD_ENDS + MIN)
    assert Decimal(outputs[-1]["detail"]["amount"]) == Decimal("0.30") and outputs[-1]["detail"]["amount"] == "0.30"


# --- the contract of the new fields --------------------------------------------------------------------------

@pytest.mark.parametrize("made, problem", [
    (seller_cancelled("o", T0, line_ids=["1"]) | {"line_ids": []},
     "line_ids must be a list of 1 to 500 line ids (leave it out for the whole order)"),
    (seller_cancelled("o", T0) | {"line_ids": ["1", "1"]}, "line_ids names a line twice"),
    (seller_cancelled("o", T0) | {"line_ids": ["1", 2]}, "line_ids must hold line ids (text of 1 to 128 characters)"),
    (seller_cancelled("o", T0) | {"line_ids": "1"}, "line_ids must be a list of 1 to 500 line ids (leave it out "
                                                    "for the whole order)"),
    (operator_cancelled("o", T0) | {"line_ids": ["1"]},
     "line_ids is for SELLER_CANCELLED, AFTER_SALES_REQUESTED, PACKAGE_SHIPPED only"),
    (operator_cancelled("o", T0) | {"reason": 123}, "reason must be text"),
    (created("o", line_items=[{**lines(1)[0], "line_id": "a,b"}]),
     "line item 1: line_id must be text without commas (or absent: lines are then numbered 1, 2, ...)"),
    (created("o", line_items=[{**lines(2)[0], "line_id": "2"}, lines(2)[1]], total_amount="50.00"),
     "two line items have the same line_id (a line without one is numbered by its place: 1, 2, ...)"),
])
def test_bad_line_ids_and_reasons_are_refused_by_the_contract(made, problem):
    assert contract.problem(made) == problem
    outputs, _, _ = run([made], until=T0)
    assert summary(outputs)[-1][1] == f"dead_letter:{problem}"


def test_a_region_listing_its_sellers_reasons_keeps_the_operators_of_the_default():
    policy = policy_with(GB='cancel_reasons = { SELLER = ["OUT_OF_STOCK"] }')
    gb, sg = policy.for_region("GB").cancel_reasons, policy.for_region("SG").cancel_reasons
    assert gb["SELLER"] == ("OUT_OF_STOCK",) and gb["OPERATOR"] == sg["OPERATOR"]


def test_the_address_stays_hidden_for_good_when_the_order_is_cancelled_before_it_could_ship():
    """Cancelled in its hold, or for want of payment: the seller never had it to ship."""
    for events in ([created("o"), paid("o", PAID_AT), cancel_request("o", PAID_AT + MIN)], [created("o")]):
        _, book, _ = run(events)
        order = book.orders["o"]
        assert order["status"] == "CANCELLED"
        assert shown_address(order, include_personal_data=True)["recipient_name"] is None
    _, book, _ = run([created("o"), paid("o", PAID_AT), seller_cancelled("o", HOLD_ENDS + MIN)])
    assert shown_address(book.orders["o"], include_personal_data=True)["recipient_name"] == "Ada Buyer"


def test_lines_cancelled_in_events_held_for_a_late_creation_release_their_holds():
    """Paid, a line cancelled and shipped before ORDER_CREATED arrives: the held events apply in one step."""
    events = [paid("o", PAID_AT), seller_cancelled("o", PAID_AT + 10 * MIN, line_ids=["2"]),
              shipped("o", PAID_AT + 20 * MIN), three_lines("o")]
    outputs, _, room = run(events, until=PAID_AT + 20 * MIN, policy=PACKAGED)
    assert summary(outputs)[-1] == (30 * MIN, "AWAITING_SHIPMENT>AWAITING_COLLECTION:SHIPPED")
    assert requests(room, "RELEASE") == [(1, 20 * MIN)]
    assert requests(room, "CONSUME") == [(0, 30 * MIN), (2, 30 * MIN)]
