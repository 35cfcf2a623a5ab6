"""The deadline index: every pending deadline of a partition's orders, in RocksDB beside them.

One key per order and due time: the due time (8 bytes, big-endian UTC ms)
then the order id, with an empty value, so RocksDB keeps the keys in due
order. Finding what is due reads a partition's keys from the front and stops
at the first one not due: nothing is held in memory per deadline, and
nothing is rebuilt when a partition is assigned or restored. The table is
changelogged and co-partitioned with order-events, and the order agent writes
it in the same batch as the orders (tables/direct.py), so an order and its
index entries become durable in the same steps of the batch protocol (a
crash in the middle of its changelog step is not covered: README,
Guarantees).

The table's other keys (Faust's changelog offset, INDEXED, STREAM_TIME, READ_POSITION) begin with a
printable byte, after every deadline's key (a due time's first byte stays zero
for two million years).
"""
from __future__ import annotations

import heapq
from typing import Iterator

import faust

from orderflow.streams.book.timers import changed_dues

from .direct import PartitionBatch, partition_db
from .orders import ROCKSDB_OPTIONS

TABLE_NAME = "deadlines"
_DEADLINES_END = b"\x01"  # every deadline's key sorts below it
# Set once every order stored in the partition is indexed. Orders stored by a version without this
# table (or on a partition assigned before it had any) are indexed once, when it is missing.
INDEXED = b"~indexed"
# The partition's stream time (streams/worker/orders.py), kept with the batch that moved it, so a worker
# that takes the partition over (or restarts) judges the next event at the time a replay would.
STREAM_TIME = b"~stream-time"
# Per input topic, the next offset the order agent is to apply: every record before it is applied and
# stored with this batch or an earlier one. Faust's committed offset trails it (acknowledgements are
# committed later): the records in between are done, not applied again. A closing key of the batch:
# the protocol delivers it after every other record of the batch (streams/worker/protocol.py).
READ_POSITION = b"~read/"


def define_deadlines_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Every pending deadline, keyed by due time then order_id (the orders table holds what it is).",
    )


def deadline_key(due: int, order_id: str) -> bytes:
    return due.to_bytes(8, "big") + order_id.encode()


def parse_key(key: bytes) -> tuple[int, str]:
    return int.from_bytes(key[:8], "big"), key[8:].decode()


def _after(now: int) -> bytes:
    """The first key not due by `now`."""
    return (now + 1).to_bytes(8, "big")


class PartitionIndex:
    """One partition's deadline index as the order book drives it (the interface of
    streams.timers.DeadlineIndex): RocksDB merged with `batch`, the batch in progress (`open`), whose
    writes are held in memory until the batch is durable."""

    def __init__(self, table: faust.Table, partition: int):
        self.table = table
        self.partition = partition
        self.batch: PartitionBatch | None = None
        # Every stored key below it was popped. A look starts there rather than at the front, where
        # the fired deadlines' tombstones lie until RocksDB compacts them away.
        self._floor = b""

    def open(self) -> PartitionBatch:
        self.batch = PartitionBatch(self.table, self.partition)
        return self.batch

    def close(self) -> None:
        self.batch = None

    def _db(self):
        return self.batch.db if self.batch else partition_db(self.table, self.partition)

    def __len__(self) -> int:
        """About how many deadlines are pending (RocksDB's estimate of the keys on disk)."""
        return self._db().property_int_value("rocksdb.estimate-num-keys") or 0

    def indexed(self) -> bool:
        return self._db().get(INDEXED) is not None

    def mark_indexed(self) -> None:
        self.batch.put(INDEXED, b"")

    def stream_time(self) -> int | None:
        stored = self._db().get(STREAM_TIME)
        return None if stored is None else int(stored)

    def keep_stream_time(self, at: int) -> None:
        self.batch.put(STREAM_TIME, str(at).encode())

    def read_position(self, topic: str) -> int:
        stored = self._db().get(READ_POSITION + topic.encode())
        return 0 if stored is None else int(stored)

    def keep_read_position(self, topic: str, offset: int) -> None:
        self.batch.put_closing(READ_POSITION + topic.encode(), str(offset).encode())

    def track(self, order_id: str, before: dict[str, int], after: dict[str, int]) -> None:
        gone, new = changed_dues(before, after)
        for due in gone:
            self.batch.put(deadline_key(due, order_id), None)
        for due in new:
            key = deadline_key(due, order_id)
            self.batch.put(key, b"")
            self._floor = min(self._floor, key)

    def due_by(self, now: int) -> bool:
        return next(self._live(self._floor, _after(now)), None) is not None

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """Every (due, order_id) due by `now`, in key order (due, then order id), deleted in the batch."""
        end = _after(now)
        keys = list(self._live(self._floor, end))
        for key in keys:
            self.batch.put(key, None)
        self._floor = max(self._floor, end)
        return [parse_key(key) for key in keys]

    def _live(self, start: bytes, end: bytes) -> Iterator[bytes]:
        """Keys in [start, end) on disk or put in the batch, less those the batch deletes, in order."""
        changed = self.batch.changed if self.batch else {}
        pending = sorted(key for key, value in changed.items() if value is not None and start <= key < end)
        return heapq.merge(pending, self._stored(start, min(end, _DEADLINES_END), changed))

    def _stored(self, start: bytes, end: bytes, changed: dict) -> Iterator[bytes]:
        for key in self._db().keys(from_key=start):
            if key >= end:
                return
            if key not in changed:  # the batch's puts come from `pending`, its deletes are gone
                yield key
