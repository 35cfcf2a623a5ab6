"""The worker's deadline index in RocksDB (tables/deadlines.py) against the in-memory one the replay uses.

Both are driven through the same interface by the order book; the RocksDB one
holds a batch's writes in memory until the batch is stored, so each case is
checked within a batch and after it.
"""
from __future__ import annotations

import faust
import pytest

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.timers import DeadlineIndex
from orderflow.streams.lifecycle import Policy
from orderflow.tables.deadlines import INDEXED, PartitionIndex, deadline_key, define_deadlines_table
from orderflow.tables.direct import PartitionBatch, partition_db
from orderflow.tables.json_table import encode
from orderflow.tables.orders import define_orders_table
from support.orders import HOUR, MIN, T0, created, paid


def _app(tmp_path):
    return faust.App("deadline-index-test", store="rocksdb://", datadir=str(tmp_path), broker="kafka://localhost:1")


class Stored:
    """A RocksDB index whose batches are stored (as step 4 of the batch protocol does) on `commit`."""

    def __init__(self, tmp_path):
        self.index = PartitionIndex(define_deadlines_table(_app(tmp_path), 4), 1)
        self.index.open()

    def commit(self) -> None:
        self.index.batch.store(self.index.batch.records() + self.index.batch.records(closing=True), None)
        self.index.open()

    def __getattr__(self, name):
        return getattr(self.index, name)


@pytest.fixture(params=["memory", "rocksdb"])
def index(request, tmp_path):
    return DeadlineIndex() if request.param == "memory" else Stored(tmp_path)


def _commit(index) -> None:
    if isinstance(index, Stored):
        index.commit()


def test_due_deadlines_pop_in_due_order_ties_by_order_id(index):
    index.track("b", {}, {"X": T0 + 2, "Y": T0 + 1})
    index.track("a", {}, {"X": T0 + 2})
    index.track("c", {}, {"X": T0 + 9})
    _commit(index)
    index.track("d", {}, {"X": T0 + 1})  # in the batch, not stored yet
    assert not index.due_by(T0) and index.due_by(T0 + 1)
    assert index.pop_due(T0 + 2) == [(T0 + 1, "b"), (T0 + 1, "d"), (T0 + 2, "a"), (T0 + 2, "b")]
    assert index.pop_due(T0 + 2) == [] and not index.due_by(T0 + 8)
    _commit(index)
    assert index.pop_due(T0 + 100) == [(T0 + 9, "c")]
    _commit(index)
    assert index.pop_due(T0 + 100) == [] and not index.due_by(T0 + 100)


def test_deadlines_an_order_dropped_do_not_come_up_in_the_batch_or_after(index):
    index.track("p", {}, {"R": T0 + 1, "T": T0 + 5})
    _commit(index)
    index.track("p", {"R": T0 + 1, "T": T0 + 5}, {"S": T0 + 3})  # paid: reminders gone, a new deadline
    index.track("q", {}, {"R": T0 + 2})
    index.track("q", {"R": T0 + 2}, {})  # set and dropped within the batch
    assert index.pop_due(T0 + 10) == [(T0 + 3, "p")]
    _commit(index)
    assert index.pop_due(T0 + 10) == []


def test_a_deadline_set_already_past_pops_after_later_ones_were_popped(index):
    index.track("late", {}, {"X": T0 + 50})
    assert index.pop_due(T0 + 100) == [(T0 + 50, "late")]
    _commit(index)
    index.track("early", {}, {"X": T0 + 10})  # an event read late sets a deadline already past
    _commit(index)
    assert index.due_by(T0 + 100)
    assert index.pop_due(T0 + 100) == [(T0 + 10, "early")]


def test_deadlines_sharing_a_due_time_are_one_entry(index):
    index.track("o", {}, {"A": T0 + 1, "B": T0 + 1})
    index.track("o", {"A": T0 + 1, "B": T0 + 1}, {"B": T0 + 1})  # one of the two left: still due
    _commit(index)
    assert index.pop_due(T0 + 1) == [(T0 + 1, "o")]


def test_the_stored_index_is_one_key_per_due_time_in_due_order(tmp_path):
    stored = Stored(tmp_path)
    stored.track("o-1", {}, {"A": T0 + HOUR, "B": T0 + MIN})
    stored.commit()
    keys = list(partition_db(stored.table, 1).keys())
    assert keys == [deadline_key(T0 + MIN, "o-1"), deadline_key(T0 + HOUR, "o-1")]
    assert keys[-1] < b"__faust" and keys[-1] < INDEXED  # the table's other keys sort after every deadline


def test_the_order_book_fires_from_the_rocksdb_index_as_from_the_memory_one(tmp_path):
    policy = Policy.load(None)
    memory = OrderBook({}, policy)
    stored = Stored(tmp_path)
    rocks = OrderBook({}, policy, stored.index)
    events = [created(order_id, T0) for order_id in ("ob-1", "ob-2", "ob-3")] + [paid("ob-2", T0 + MIN)]
    outputs = {"memory": [], "rocksdb": []}
    for book, name in ((memory, "memory"), (rocks, "rocksdb")):
        for event in events:
            outputs[name] += book.apply(event, event["event_time"])
        if book is rocks:
            stored.commit()
        for now in (T0 + 15 * MIN, T0 + 20 * HOUR, T0 + 50 * HOUR):
            outputs[name] += book.fire_due(now)
            if book is rocks:
                stored.commit()
    assert [o["output_id"] for o in outputs["rocksdb"]] == [o["output_id"] for o in outputs["memory"]]
    assert sum(o.get("reason") == "UNPAID_TIMEOUT" for o in outputs["memory"]) == 2
    assert stored.pop_due(T0 + 50 * HOUR) == [] and stored.due_by(T0 + 73 * HOUR)  # ob-2 must ship by 72 h


def test_orders_stored_before_the_index_existed_are_indexed_once(tmp_path):
    app = _app(tmp_path)
    orders = define_orders_table(app, 4)
    index = PartitionIndex(define_deadlines_table(app, 4), 2)
    book = OrderBook({}, Policy.load(None))
    book.apply(created("old-1", T0), T0)
    book.apply(created("old-2", T0), T0)
    batch = PartitionBatch(orders, 2, encode)
    for order_id, order in book.orders.items():
        batch.put(order_id.encode(), order)
    batch.store(batch.records(), 7)
    assert not index.indexed()

    batch = index.open()
    rocks = OrderBook({}, Policy.load(None), index)
    assert rocks.index_orders(book.orders.items()) == 2
    index.mark_indexed()
    batch.store(batch.records(), None)
    index.open()
    assert index.indexed()
    assert [order_id for _, order_id in index.pop_due(T0 + 48 * HOUR)] == ["old-1", "old-2"] * 3


def test_read_positions_are_kept_per_input_topic_as_closing_keys_of_the_batch(tmp_path):
    """The batch protocol delivers closing keys after every other record of the batch: a restore
    that has a read position has the rest of the batch that wrote it."""
    stored = Stored(tmp_path)
    assert stored.read_position("order-events") == 0  # none kept yet: start from the committed offset
    stored.track("a", {}, {"X": T0 + 1})
    stored.keep_stream_time(T0)
    stored.keep_read_position("order-events", 17)
    stored.keep_read_position("stock-replies", 3)
    assert [key for key, _ in stored.batch.records(closing=True)] == [b"~read/order-events", b"~read/stock-replies"]
    assert not [key for key, _ in stored.batch.records() if key.startswith(b"~read/")]
    assert stored.read_position("order-events") == 0  # not stored before the batch is
    stored.commit()
    assert (stored.read_position("order-events"), stored.read_position("stock-replies")) == (17, 3)
    assert stored.due_by(T0 + 1) and not stored.due_by(T0)  # the keys sort after every deadline's
