"""Analytics of orders shipped in several packages: an order is handed over once, when its last open line
is (PARTIALLY_SHIPPING is on the way there), so late_dispatch_rate counts it once, late or in time; a
status change that both hands it over and delivers it gives both facts, under ids of their own."""
from __future__ import annotations

from orderflow.streams.analytics.facts import Aggregator, Latest, MemoryStore, facts, rows, zones
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy
from support.orders import (DAY, HOUR, MIN, T0, created, delivered, failed, lines, paid, seller_cancelled, shipped,
                            total, update)

POLICY = Policy.load()  # ship-by 72 h after payment, redelivery window 7 days
THREE = lines(3)
SHIP_BY = T0 + MIN + 72 * HOUR


def three_lines(order_id: str = "o") -> list[dict]:
    return [created(order_id, line_items=THREE, total_amount=total(THREE)), paid(order_id, T0 + MIN, "140.00")]


def observed(events: list[dict], until: int = T0 + 30 * DAY) -> tuple[list[dict], list[dict]]:
    """The facts of a replay, and the status changes it made."""
    book = OrderBook({}, POLICY)
    found: list[dict] = []
    book.observers.append(lambda before, after, outputs: found.extend(facts(before, after, outputs)))
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), until, POLICY, book))
    assert [o for o in outputs if o["output"] == "dead_letter"] == []
    changes = [f"{o['from_status']}>{o['to_status']}:{o['reason']}" for o in outputs if o["output"] == "status_change"]
    return found, changes


def shipping_facts(found: list[dict]) -> list[tuple[str, int]]:
    return [(f["kind"], f["at"] - T0) for f in found if f["kind"] in ("SHIPPED_IN_TIME", "SHIP_BY_OVERDUE")]


def late_dispatch_rates(found: list[dict]) -> list[list]:
    """late_dispatch_rate of each local day that has one, in the order's shop row."""
    aggregator, latest = Aggregator(MemoryStore(), zones(POLICY)), Latest()
    for fact in found:
        for record in aggregator.add(rows(fact)[0]):
            latest.add(record)
    return [metrics["late_dispatch_rate"] for row, metrics in latest.windows().items()
            if row.granularity == "DAY" and "late_dispatch_rate" in metrics]


def test_two_packages_in_time_are_one_hand_over_in_time_when_the_last_line_is_handed_over():
    found, changes = observed([*three_lines(), shipped("o", T0 + DAY, package_id="P1", line_ids=["1", "3"]),
                               shipped("o", T0 + 2 * DAY, package_id="P2", line_ids=["2"]),
                               update("o", T0 + 2 * DAY + HOUR, "COLLECTED", package_id="P1"),
                               update("o", T0 + 2 * DAY + 2 * HOUR, "COLLECTED", package_id="P2"),
                               delivered("o", T0 + 3 * DAY, package_id="P1"),
                               delivered("o", T0 + 4 * DAY, package_id="P2")])
    assert "AWAITING_SHIPMENT>PARTIALLY_SHIPPING:SHIPPED" in changes
    assert "PARTIALLY_SHIPPING>AWAITING_COLLECTION:SHIPPED" in changes
    assert shipping_facts(found) == [("SHIPPED_IN_TIME", 2 * DAY)]  # not at the first package too
    assert [(f["kind"], f["at"] - T0) for f in found if f["kind"] == "DELIVERED"] == [("DELIVERED", 4 * DAY)]
    assert late_dispatch_rates(found) == [[(None, "0.0000")]]  # one dispatch, on one day


def test_a_first_package_in_time_and_the_rest_late_is_one_late_dispatch():
    found, _ = observed([*three_lines(), shipped("o", T0 + DAY, package_id="P1", line_ids=["1"]),
                         shipped("o", T0 + 4 * DAY, package_id="P2")])
    assert shipping_facts(found) == [("SHIP_BY_OVERDUE", SHIP_BY - T0)]
    assert late_dispatch_rates(found) == [[(None, "1.0000")]]


def test_the_lines_left_to_ship_cancelled_hand_the_order_over_once():
    # Collected, then the rest cancelled: PARTIALLY_SHIPPING>IN_TRANSIT:COLLECTED is the hand-over.
    found, changes = observed([*three_lines(), shipped("o", T0 + DAY, package_id="P1", line_ids=["1"]),
                               update("o", T0 + DAY + HOUR, package_id="P1"),
                               seller_cancelled("o", T0 + 2 * DAY, line_ids=["2", "3"])], until=T0 + 2 * DAY)
    assert changes[-1] == "PARTIALLY_SHIPPING>IN_TRANSIT:COLLECTED"
    assert shipping_facts(found) == [("SHIPPED_IN_TIME", 2 * DAY)]


def test_a_status_change_that_hands_over_and_delivers_gives_both_facts_under_their_own_ids():
    # Delivered, then the rest cancelled: PARTIALLY_SHIPPING>DELIVERED:DELIVERED hands over and delivers.
    found, changes = observed([*three_lines(), shipped("o", T0 + DAY, package_id="P1", line_ids=["1"]),
                               delivered("o", T0 + 2 * DAY, package_id="P1"),
                               seller_cancelled("o", T0 + 2 * DAY + HOUR, line_ids=["2", "3"])],
                              until=T0 + 2 * DAY + HOUR)
    assert changes[-1] == "PARTIALLY_SHIPPING>DELIVERED:DELIVERED"
    both = [f for f in found if f["at"] == T0 + 2 * DAY + HOUR]
    assert [f["kind"] for f in both] == ["SHIPPED_IN_TIME", "DELIVERED"]
    assert len({f["fact_id"] for f in found}) == len(found)
    # Both count: neither is taken for a repeat of the other.
    aggregator = Aggregator(MemoryStore(), zones(POLICY))
    for fact in found:
        aggregator.add_many(rows(fact))
    assert aggregator.tally["duplicates"] == 0 and aggregator.tally["applied"] == 2 * len(found)


def test_each_failed_delivery_of_each_package_is_a_fact_and_the_order_is_delivered_once():
    found, _ = observed([*three_lines(), shipped("o", T0 + DAY, package_id="P1", line_ids=["1"]),
                         shipped("o", T0 + DAY + HOUR, package_id="P2"),
                         failed("o", T0 + 2 * DAY, package_id="P1"),
                         delivered("o", T0 + 2 * DAY + HOUR, package_id="P2")])
    # P1 is never asked for again: given up after the 7-day window, its line cancelled; the order is delivered
    # (what is left of it) then.
    kinds = [(f["kind"], f["at"] - T0) for f in found if f["kind"] in ("DELIVERY_FAILED", "DELIVERED")]
    assert kinds == [("DELIVERY_FAILED", 2 * DAY), ("DELIVERED", 9 * DAY)]
