"""Replay scenarios for orders shipped in several packages (TikTok Shop parity, part 2): the order
follows its packages, each package keeps its own clocks, a package given up cancels its lines."""
from __future__ import annotations

import dataclasses

import pytest

from orderflow.streams.api import urgency
from orderflow.streams.lifecycle import Policy, contract, engine
from orderflow.streams.lifecycle.confirmation import stock_requests
from orderflow.streams.lifecycle.shipping import package_tracking, packages
from support.orders import (DAY, HOUR, MIN, T0, RecordingRoom, after_sales, created, delivered, failed, lines,
                            operator_cancelled, paid, redelivery, seller_cancelled, shipped, total, update)
from support.replays import replayed, stored_before_packages, summary

POLICY = Policy.load()  # ship-by 72 h, stall 5 days, redelivery window 7 days, auto-confirm 7 days
THREE = lines(3)  # line ids 1, 2, 3: 1 x 10.00, 2 x 20.00, 3 x 30.00 = 140.00
PAID = (MIN, "UNPAID>AWAITING_SHIPMENT:PAID")
CREATED = (0, "None>UNPAID:CREATED")


def three_lines(order_id="o"):
    return [created(order_id, line_items=THREE, total_amount=total(THREE)), paid(order_id, T0 + MIN, "140.00")]


def run(events, until=T0 + 60 * DAY):
    room = RecordingRoom()
    outputs, book = replayed(events, until, POLICY, room)
    return outputs, book, room


def consumed(room):
    return sorted((r["line"], r["at"] - T0) for r in room.requests if r["action"] == "CONSUME")


def alerts(outputs, kind):
    return [(o["at"] - T0, o["detail"]) for o in outputs if o.get("kind") == kind]


def test_a_two_package_order_is_delivered_package_by_package():
    events = [*three_lines(),
              shipped("o", T0 + DAY, package_id="A", line_ids=["1", "2"], tracking_number="RM1"),
              update("o", T0 + DAY + HOUR, "COLLECTED", package_id="A"),
              shipped("o", T0 + 2 * DAY, package_id="B", line_ids=["3"], carrier="DPD", tracking_number="DPD2"),
              update("o", T0 + 2 * DAY + HOUR, "COLLECTED", package_id="B"),
              delivered("o", T0 + 3 * DAY, package_id="A"),
              delivered("o", T0 + 4 * DAY, package_id="B")]
    outputs, book, room = run(events)
    assert summary(outputs) == [
        CREATED, PAID, (DAY, "AWAITING_SHIPMENT>PARTIALLY_SHIPPING:SHIPPED"),
        (2 * DAY, "PARTIALLY_SHIPPING>AWAITING_COLLECTION:SHIPPED"),
        (2 * DAY + HOUR, "AWAITING_COLLECTION>IN_TRANSIT:COLLECTED"), (4 * DAY, "IN_TRANSIT>DELIVERED:DELIVERED"),
        (4 * DAY + 7 * DAY, "DELIVERED>COMPLETED:AUTO_CONFIRMED")]  # from the last delivery
    order = book.orders["o"]
    assert [(p["package_id"], p["line_ids"], p["carrier"], p["tracking_number"], p["status"])
            for p in packages(order)] == [("A", ["1", "2"], "Royal Mail", "RM1", "DELIVERED"),
                                          ("B", ["3"], "DPD", "DPD2", "DELIVERED")]
    assert [e["status"] for e in package_tracking(order, "A")] == ["SHIPPED", "COLLECTED", "DELIVERED"]
    assert [e["at"] - T0 for e in package_tracking(order, "B")] == [2 * DAY, 2 * DAY + HOUR, 4 * DAY]
    assert consumed(room) == [(0, DAY), (1, DAY), (2, 2 * DAY)]  # each package its own lines' holds
    assert order["shipped_at"] == T0 + DAY  # the first hand-over


def test_one_package_failed_and_never_redelivered_while_the_other_is_delivered():
    events = [*three_lines(),
              shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"]),
              update("o", T0 + DAY + HOUR, package_id="A"), update("o", T0 + DAY + HOUR, package_id="B"),
              delivered("o", T0 + 2 * DAY, package_id="A"),
              failed("o", T0 + 3 * DAY, package_id="B")]
    outputs, book, _ = run(events)
    assert summary(outputs)[2:] == [
        (DAY, "AWAITING_SHIPMENT>PARTIALLY_SHIPPING:SHIPPED"), (DAY, "PARTIALLY_SHIPPING>AWAITING_COLLECTION:SHIPPED"),
        (DAY + HOUR, "AWAITING_COLLECTION>IN_TRANSIT:COLLECTED"), (3 * DAY, "alert:DELIVERY_FAILED"),
        (10 * DAY, "alert:REDELIVERY_WINDOW_EXPIRED"), (10 * DAY, "IN_TRANSIT>DELIVERED:DELIVERED"),
        # The auto-confirm period ran from the last delivery (day 2): it is over when B is given up.
        (10 * DAY, "DELIVERED>COMPLETED:AUTO_CONFIRMED")]
    assert alerts(outputs, "REDELIVERY_WINDOW_EXPIRED") == [
        (10 * DAY, {"package_id": "B", "line_ids": "2,3", "amount": "130.00", "currency": "GBP"})]
    assert alerts(outputs, "DELIVERY_FAILED") == [(3 * DAY, {"reason": "WRONG_ADDRESS", "package_id": "B"})]
    order = book.orders["o"]
    assert {line: c["reason"] for line, c in order["cancelled_lines"].items()} == {"2": "LOGISTICS_FAILURE",
                                                                                "3": "LOGISTICS_FAILURE"}
    assert [p["status"] for p in packages(order)] == ["DELIVERED", "CANCELLED"]
    # Its lines were never received: no after-sales case for them.
    outputs, _, _ = run(events + [after_sales("o", T0 + 11 * DAY, line_ids=["2"])])
    assert summary(outputs)[-1] == (11 * DAY, "dead_letter:the order has no line 2 (its lines: 1)")


def test_the_order_is_cancelled_only_when_its_last_package_is_given_up():
    events = [*three_lines(),
              shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"]),
              failed("o", T0 + 2 * DAY, package_id="A"), failed("o", T0 + 3 * DAY, package_id="B")]
    outputs, book, _ = run(events)
    assert summary(outputs)[-5:] == [
        (2 * DAY, "alert:DELIVERY_FAILED"), (3 * DAY, "alert:DELIVERY_FAILED"),
        (9 * DAY, "alert:REDELIVERY_WINDOW_EXPIRED"), (10 * DAY, "alert:REDELIVERY_WINDOW_EXPIRED"),
        (10 * DAY, "AWAITING_COLLECTION>CANCELLED:LOGISTICS_FAILURE")]
    assert [d["amount"] for _, d in alerts(outputs, "REDELIVERY_WINDOW_EXPIRED")] == ["10.00", "130.00"]
    assert book.orders["o"]["cancel_initiator"] == "SYSTEM"


def test_a_redelivery_of_one_package_leaves_the_other_package_s_clocks_alone():
    events = [*three_lines(),
              shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"]),
              update("o", T0 + 2 * DAY, package_id="A"), update("o", T0 + 2 * DAY, package_id="B"),
              failed("o", T0 + 3 * DAY, package_id="A"), redelivery("o", T0 + 4 * DAY, package_id="A"),
              update("o", T0 + 4 * DAY + HOUR, package_id="B")]
    outputs, book, _ = run(events, until=T0 + 30 * DAY)
    # B's stall clock runs from its own latest scan; A's is stopped by its failure, its dispatch is due in
    # 2 business days (Sat 21 Nov .. Mon 23 Nov: Tuesday).
    assert alerts(outputs, "SHIPMENT_STALLED") == [(9 * DAY + HOUR, {
        "last_update_at": str(T0 + 4 * DAY + HOUR), "carrier": "Royal Mail", "tracking_number": "RM123",
        "package_id": "B"})]
    assert [(at, d["package_id"]) for at, d in alerts(outputs, "REDELIVERY_DISPATCH_OVERDUE")] == [(6 * DAY, "A")]
    assert book.orders["o"]["conditions"]["DELIVERY_FAILED"]["package_id"] == "A"
    assert "REDELIVERY_WINDOW_EXPIRED" not in str(summary(outputs))


def test_ship_by_overdue_fires_while_any_open_line_is_unshipped():
    part = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"])]
    outputs, book, _ = run(part, until=T0 + MIN + 72 * HOUR)
    assert alerts(outputs, "SHIP_BY_OVERDUE") == [(MIN + 72 * HOUR, {"line_ids": "2,3"})]
    assert "LATE_DISPATCH" in book.orders["o"]["conditions"]
    rest = shipped("o", T0 + 4 * DAY, package_id="B")  # without line_ids: every line left to ship
    outputs, book, _ = run(part + [rest], until=T0 + 4 * DAY)
    assert summary(outputs)[-1] == (4 * DAY, "PARTIALLY_SHIPPING>AWAITING_COLLECTION:SHIPPED")
    assert packages(book.orders["o"])[1]["line_ids"] == ["2", "3"]
    assert "LATE_DISPATCH" not in book.orders["o"]["conditions"] and book.orders["o"]["late_dispatched"]
    # Everything shipped a millisecond before the ship-by: no alert.
    outputs, _, _ = run([*three_lines(), shipped("o", T0 + DAY, line_ids=["1"]),
                         shipped("o", T0 + MIN + 72 * HOUR - 1, line_ids=["3", "2"])])
    assert not alerts(outputs, "SHIP_BY_OVERDUE")


def test_the_seller_cancels_the_lines_left_to_ship_and_the_order_follows_its_packages():
    events = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              update("o", T0 + DAY + HOUR, package_id="A"), seller_cancelled("o", T0 + 2 * DAY, line_ids=["2", "3"])]
    outputs, book, room = run(events, until=T0 + 2 * DAY)
    assert summary(outputs)[-2:] == [(2 * DAY, "alert:LINES_CANCELLED"),
                                     (2 * DAY, "PARTIALLY_SHIPPING>IN_TRANSIT:COLLECTED")]
    assert sorted((r["line"], r["at"] - T0) for r in room.requests if r["action"] == "RELEASE") == [
        (1, 2 * DAY), (2, 2 * DAY)]
    assert "SHIP_BY" not in book.orders["o"]["deadlines"]
    outputs, _, _ = run(events[:3] + [seller_cancelled("o", T0 + 2 * DAY, line_ids=["1"])], until=T0 + 2 * DAY)
    assert summary(outputs)[-1] == (2 * DAY, "dead_letter:line 1 shipped already")


def test_an_operator_cancel_of_a_partly_shipped_order_releases_only_the_unshipped_lines():
    events = [*three_lines(), shipped("o", T0 + DAY, line_ids=["2"]),
              operator_cancelled("o", T0 + 2 * DAY)]
    outputs, _, room = run(events, until=T0 + 2 * DAY)
    assert summary(outputs)[-1] == (2 * DAY, "PARTIALLY_SHIPPING>CANCELLED:OPERATOR_CANCELLED")
    assert consumed(room) == [(1, DAY)]
    assert sorted(r["line"] for r in room.requests if r["action"] == "RELEASE") == [0, 2]


@pytest.mark.parametrize("late, reason", [
    (shipped("o", T0 + 3 * DAY, line_ids=["1"]), "line 1 shipped already"),
    (shipped("o", T0 + 3 * DAY, line_ids=["2", "9"]), "the order has no line 9 (its lines: 1, 2, 3)"),
    (shipped("o", T0 + 3 * DAY, package_id="A", line_ids=["3"]), "package A was shipped already"),
    (update("o", T0 + 3 * DAY), "name the package (package_id): the order has 2 packages"),
    (delivered("o", T0 + 3 * DAY, package_id="Z"), "the order has no package Z (its packages: A, B)"),
    (failed("o", T0 + 3 * DAY, package_id="A"), "DELIVERY_FAILED is not allowed for package A, which is DELIVERED"),
    (redelivery("o", T0 + 3 * DAY, package_id="B"), "no failed delivery awaits a redelivery request"),
])
def test_shipping_a_line_twice_or_naming_no_or_an_unknown_package_is_a_dead_letter(late, reason):
    events = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              shipped("o", T0 + DAY, package_id="B", line_ids=["2"]), delivered("o", T0 + 2 * DAY, package_id="A")]
    outputs, book, _ = run(events + [late], until=T0 + 3 * DAY)
    assert summary(outputs)[-1] == (3 * DAY, f"dead_letter:{reason}")
    assert book.orders["o"]["status"] == "PARTIALLY_SHIPPING"


def test_a_cancelled_line_cannot_ship():
    events = [*three_lines(), seller_cancelled("o", T0 + DAY, line_ids=["3"]), shipped("o", T0 + 2 * DAY,
                                                                                        line_ids=["2", "3"])]
    outputs, _, _ = run(events, until=T0 + 2 * DAY)
    assert summary(outputs)[-1] == (2 * DAY, "dead_letter:line 3 is cancelled")
    outputs, book, _ = run(events[:-1] + [shipped("o", T0 + 2 * DAY)], until=T0 + 2 * DAY)
    assert packages(book.orders["o"])[0]["line_ids"] == ["1", "2"]  # one package: the open lines


@pytest.mark.parametrize("made, problem", [
    (shipped("o", T0, package_id=""), "package_id must be text"),
    (shipped("o", T0, package_id=7), "package_id must be text"),
    (paid("o", T0) | {"package_id": "A"},
     "package_id is for PACKAGE_SHIPPED, LOGISTICS_UPDATE, DELIVERY_FAILED, REDELIVERY_REQUESTED, DELIVERED only"),
    (shipped("o", T0, line_ids=["1", "1"]), "line_ids names a line twice"),
])
def test_bad_package_fields_are_refused_by_the_contract(made, problem):
    assert contract.problem(made) == problem


@pytest.mark.parametrize("rest", [
    [delivered("o", T0 + 3 * DAY)],
    [failed("o", T0 + 3 * DAY)],
    [failed("o", T0 + 3 * DAY), redelivery("o", T0 + 4 * DAY), update("o", T0 + 5 * DAY), delivered("o", T0 + 6 * DAY)],
])
def test_an_order_stored_before_packages_goes_on_as_one_package(rest):
    """Its parcel reads as package "1", its plain-named deadlines as that package's; nothing is consumed
    twice; it ends as the same order replayed whole does."""
    start = [created("o"), paid("o", T0 + MIN), shipped("o", T0 + DAY), update("o", T0 + 2 * DAY)]
    for cut in range(len(rest)):
        done = start + rest[:cut]
        _, book, _ = run(done, until=done[-1]["event_time"])
        order = stored_before_packages(book.orders["o"])
        outputs = []
        for event in rest[cut:]:
            step = engine.apply(order, event, event["event_time"], POLICY)
            assert not [r for r in stock_requests(order, step.order) if r["action"] == "CONSUME"]
            order, outputs = step.order, outputs + step.outputs
        fired = engine.advance(order, T0 + 30 * DAY, POLICY)
        whole, book, _ = run(start + rest, until=T0 + 30 * DAY)
        after_cut = [o for o in whole if o["at"] >= rest[cut]["event_time"]]
        assert summary(outputs + fired.outputs) == summary(after_cut)
        assert fired.order["status"] == book.orders["o"]["status"]


# --- found by review: a package given up or delivered awaits nothing; an order with a delivered package
# stays received; each package's tracking has its own room ---------------------------------------------

GIVEN_UP = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
            shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"]), delivered("o", T0 + 2 * DAY, package_id="A"),
            failed("o", T0 + 3 * DAY, package_id="B")]  # B given up at day 10, the order completed with it


@pytest.mark.parametrize("before, late", [
    (GIVEN_UP, redelivery("o", T0 + 11 * DAY, package_id="B")),  # completed, B given up
    ([*three_lines(), shipped("o", T0 + DAY), failed("o", T0 + 2 * DAY)], redelivery("o", T0 + 10 * DAY)),  # cancelled
    ([*three_lines(), shipped("o", T0 + DAY, line_ids=["1"]), failed("o", T0 + 2 * DAY),
      operator_cancelled("o", T0 + 3 * DAY)], redelivery("o", T0 + 3 * DAY + HOUR)),
])
def test_a_redelivery_request_for_a_package_no_longer_on_its_way_is_a_dead_letter(before, late):
    _, book, _ = run(before, until=late["event_time"])
    status = book.orders["o"]["status"]
    outputs, book, room = run(before + [late], until=late["event_time"] + 30 * DAY)
    assert summary(outputs)[len(summary(run(before, until=late["event_time"])[0]))] == (
        late["event_time"] - T0, "dead_letter:no failed delivery awaits a redelivery request")
    assert book.orders["o"]["status"] == status
    assert not urgency.action_needed(book.orders["o"])


def test_a_package_given_up_last_cancels_its_lines_with_the_order():
    events = [*three_lines(), shipped("o", T0 + DAY), failed("o", T0 + 2 * DAY)]
    outputs, book, _ = run(events)
    assert summary(outputs)[-2:] == [(9 * DAY, "alert:REDELIVERY_WINDOW_EXPIRED"),
                                     (9 * DAY, "AWAITING_COLLECTION>CANCELLED:LOGISTICS_FAILURE")]
    # Refunded by the alert: a consumer taking the cancelled lines off the payment finds nothing more due.
    assert alerts(outputs, "REDELIVERY_WINDOW_EXPIRED")[0][1]["amount"] == "140.00"
    assert sorted(book.orders["o"]["cancelled_lines"]) == ["1", "2", "3"]


def test_an_operator_cannot_cancel_an_order_with_a_delivered_package():
    for rest in ([shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"])], []):
        events = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
                  delivered("o", T0 + 2 * DAY, package_id="A"), *rest, operator_cancelled("o", T0 + 3 * DAY)]
        outputs, _, _ = run(events, until=T0 + 3 * DAY)
        assert summary(outputs)[-1] == (3 * DAY, "dead_letter:a package of the order was delivered already")


def test_one_package_s_scans_do_not_crowd_out_another_s_failed_delivery():
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(POLICY.limits, tracking_updates=4))
    scans = [update("o", T0 + DAY + n * MIN, package_id="A") for n in range(1, 6)]
    events = [*three_lines(), shipped("o", T0 + DAY, package_id="A", line_ids=["1"]),
              shipped("o", T0 + DAY, package_id="B", line_ids=["2", "3"]), *scans, failed("o", T0 + 2 * DAY, package_id="B")]
    outputs, _ = replayed(events, T0 + 2 * DAY, policy)
    assert [o["reason"] for o in outputs if o["output"] == "dead_letter"] == [
        "package A's tracking holds its limit of 4 entries already"] * 2
    assert summary(outputs)[-1] == (2 * DAY, "alert:DELIVERY_FAILED")
