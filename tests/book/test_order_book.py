"""The order book over a store: what the live worker's batch protocol relies on when a batch runs again.

A batch taken again after a crash runs against the state its first run left
durable: either the state before it (then the same inputs give the same
outputs, with the same ids) or the state after it (then they change nothing).
"""
from __future__ import annotations

import copy

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.lifecycle import Policy
from support.orders import HOUR, MIN, T0, created, paid


def _ids(outputs):
    return [o["output_id"] for o in outputs]


def _book(orders=None) -> OrderBook:
    return OrderBook({} if orders is None else orders, Policy.load(None))


def test_a_batch_run_again_on_the_state_before_it_gives_the_same_outputs():
    events = [created("ob-1", T0), paid("ob-1", T0 + MIN)]
    first, again = _book(), _book()
    outputs = [o for e in events for o in first.apply(e, e["event_time"])]
    # Events are applied at stream time (their event time here), however late the batch runs again.
    assert _ids([o for e in events for o in again.apply(e, e["event_time"])]) == _ids(outputs)
    assert [o.get("to_status") or o.get("action") for o in outputs] == ["UNPAID", "AWAITING_SHIPMENT", "RESERVE"]


def test_a_batch_run_again_on_the_state_after_it_changes_nothing():
    book = _book()
    events = [created("ob-2", T0), paid("ob-2", T0 + MIN)]
    for e in events:
        book.apply(e, e["event_time"])
    stored = copy.deepcopy(book.orders)
    assert [o for e in events for o in book.apply(e, e["event_time"])] == []
    assert book.orders == stored and book.tally["duplicates"] == 2


def test_deadlines_fire_once_and_again_only_on_the_state_before_them():
    book = _book()
    book.apply(created("ob-3", T0), T0)
    before = copy.deepcopy(book.orders)
    fired = book.fire_due(T0 + 15 * MIN)
    assert [o.get("kind") for o in fired] == ["PAYMENT_REMINDER_15M"]
    assert book.fire("ob-3", T0 + 15 * MIN) == []  # fired: nothing new
    retry = _book(before)
    retry.index_orders(before.items())
    assert _ids(retry.fire_due(T0 + 15 * MIN)) == _ids(fired)


def test_orders_stored_without_an_index_are_indexed_from_the_orders_given():
    book = _book()
    book.apply(created("ob-4", T0), T0)
    other = _book(book.orders)
    assert other.index_orders(list(book.orders.items())) == 1 and len(other.index) == len(book.index) == 3
    assert other.fire_due(T0 + 48 * HOUR)[-1]["reason"] == "UNPAID_TIMEOUT"


def test_an_index_behind_its_orders_is_repaired_when_its_stale_entries_come_due():
    """A crash between the orders' changelog and the index's: the orders hold a batch of firings, the
    index the entries from before it. Those stale entries fire nothing, and index their orders again."""
    book = _book()
    book.apply(created("ob-5", T0), T0)
    index_before = copy.deepcopy(book.index)
    fired = book.fire_due(T0 + 48 * HOUR)
    assert fired[-1]["to_status"] == "CANCELLED" and book.orders["ob-5"]["deadlines"]  # its retention
    stale = OrderBook(copy.deepcopy(book.orders), Policy.load(None), index_before)
    assert stale.fire_due(T0 + 48 * HOUR) == [] and stale.orders == book.orders
    expected = sorted((due, "ob-5") for due in set(book.orders["ob-5"]["deadlines"].values()))
    assert stale.index.pop_due(T0 + 10_000 * HOUR) == expected
