"""The order book's outbox: what a crash between a table write and its outputs would lose comes again.

The live worker's table write lands before its outputs are sent and before the
input offset is committed; these tests play the redelivery that follows a
crash against a plain dict, with `committed` standing in for the consumer's
committed offsets.
"""
from __future__ import annotations

from orderflow.streams.lifecycle import Policy
from orderflow.streams.order_book import OUTBOX, OrderBook, without_outbox
from orders import HOUR, MIN, T0, created, paid, shipped, update

EVENTS, TICKS = "order-events", "orderflow-timer-ticks"


def _book(committed: dict) -> OrderBook:
    def settled(source):
        topic, partition, offset = source
        return offset < committed.get((topic, partition), 0)
    return OrderBook({}, Policy.load(None), settled=settled)


def _ids(outputs):
    return [o["output_id"] for o in outputs]


def test_a_redelivered_event_publishes_its_outputs_again_with_the_same_ids():
    committed = {}
    book = _book(committed)
    create, pay = created("ob-1", T0), paid("ob-1", T0 + MIN)
    first = book.apply(create, T0, [EVENTS, 0, 0]) + book.apply(pay, T0 + MIN, [EVENTS, 0, 1])
    # The crash came before the commit: both events come again from offset 0.
    again = book.apply(create, T0 + MIN, [EVENTS, 0, 0]) + book.apply(pay, T0 + MIN, [EVENTS, 0, 1])
    # Created, paid, and the paid order's stock request for its line.
    assert [o.get("to_status") or o.get("action") for o in first] == ["UNPAID", "AWAITING_SHIPMENT", "RESERVE"]
    assert _ids(again) == _ids(first)
    assert book.tally["duplicates"] == 2 and book.tally["applied"] == 2


def test_settled_inputs_leave_the_outbox_and_are_not_published_again():
    committed = {}
    book = _book(committed)
    create, pay = created("ob-2", T0), paid("ob-2", T0 + MIN)
    book.apply(create, T0, [EVENTS, 0, 0])
    committed[(EVENTS, 0)] = 1  # offset 0 committed: its outputs were flushed first
    book.apply(pay, T0 + MIN, [EVENTS, 0, 1])
    assert [entry["source"] for entry in book.orders["ob-2"][OUTBOX]] == [[EVENTS, 0, 1]]
    assert book.apply(create, T0 + MIN, [EVENTS, 0, 0]) == []
    committed[(EVENTS, 0)] = 2
    assert book.apply(pay, T0 + MIN, [EVENTS, 0, 1]) == []


def test_a_redelivered_step_without_outputs_rewrites_the_order_for_the_changelog():
    """A step that changed the order but published nothing (a second carrier scan) must still be
    written again when its input comes again: the first write may never have reached the changelog."""
    writes = []

    class Store(dict):
        def __setitem__(self, key, value):
            writes.append(key)
            super().__setitem__(key, value)

    book = _book({})
    book.orders = Store()
    events = [created("ob-6", T0), paid("ob-6", T0 + MIN), shipped("ob-6", T0 + HOUR),
              update("ob-6", T0 + 2 * HOUR), update("ob-6", T0 + 3 * HOUR)]
    for n, event in enumerate(events):
        book.apply(event, event["event_time"], [EVENTS, 0, n])
    assert book.apply(events[-1], T0 + 3 * HOUR, [EVENTS, 0, 4]) == []  # a second scan has no output
    assert writes == ["ob-6"] * 6


def test_an_upstream_duplicate_at_another_offset_publishes_nothing():
    book = _book({})
    create = created("ob-3", T0)
    assert len(book.apply(create, T0, [EVENTS, 0, 0])) == 1
    assert book.apply(dict(create), T0, [EVENTS, 0, 7]) == []


def test_a_redelivered_tick_publishes_the_deadline_outputs_again():
    committed = {}
    book = _book(committed)
    book.apply(created("ob-4", T0), T0, [EVENTS, 1, 0])
    due = T0 + 15 * MIN
    fired = book.fire("ob-4", due, [TICKS, 1, 0])
    assert [o.get("kind") for o in fired] == ["PAYMENT_REMINDER_15M"]
    assert _ids(book.fire("ob-4", due, [TICKS, 1, 0])) == _ids(fired)
    assert book.fire("ob-4", due, [TICKS, 1, 5]) == []  # a second tick for the same due: nothing new


def test_the_outbox_is_not_part_of_the_order_state():
    """A replay (no outbox) and a live book end with the same lifecycle state."""
    live, replayed = _book({}), OrderBook({}, Policy.load(None))
    for n, event in enumerate([created("ob-5", T0), paid("ob-5", T0 + HOUR)]):
        live.apply(event, event["event_time"], [EVENTS, 0, n])
        replayed.apply(event, event["event_time"])
    assert OUTBOX in live.orders["ob-5"] and OUTBOX not in replayed.orders["ob-5"]
    assert without_outbox(live.orders["ob-5"]) == replayed.orders["ob-5"]
