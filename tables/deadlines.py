"""The deadline index of a worker: (due, order_id) of every pending deadline, per partition, in RocksDB.

Keys are the due time (13 digits, UTC ms) and the order id, so RocksDB keeps
them in due order: finding what is due reads a partition's keys from the front
and stops at the first later one. An entry is written and removed in the same
step as its order, in the order's partition (tables/direct.py), and restored
from its changelog with the orders: nothing to hold in memory or rebuild at a
restart, however many deadlines are pending.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import faust

from .direct import PartitionWriter
from .orders import ROCKSDB_OPTIONS

TABLE_NAME = "deadlines"


def define_deadlines_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Every pending deadline as due|order_id, in due order.",
    )


def _key(due: int, order_id: str) -> bytes:
    return b"%013d\x1f" % due + order_id.encode()


class StoredDeadlines:
    """The OrderBook's deadline index in the worker (streams/timers.py has the replay's)."""

    def __init__(self, writer: PartitionWriter, partitions: Callable[[], Iterable[int]]):
        self.writer = writer
        self.partitions = partitions  # the partitions this worker holds
        # Entries handed out as ticks since this worker started: each stays in the table until
        # its order moves past it, and goes out once more after a restart (ticks are idempotent).
        self.sent: set[bytes] = set()

    def update(self, order_id: str, before: set[int], after: set[int]) -> None:
        for due in after - before:
            self.writer.write(_key(due, order_id), b"")
        for due in before - after:
            key = _key(due, order_id)
            self.writer.write(key, None)
            self.sent.discard(key)

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """Every (due, order_id) due by `now` not handed out yet, earliest first."""
        bound = b"%013d" % now
        due = []
        for partition in self.partitions():
            for key in self.writer.table.data._db_for_partition(partition).keys():
                if key[:13] > bound:
                    break
                if key not in self.sent and key[:1] != b"_":  # '_': Faust's own offset key
                    self.sent.add(key)
                    due.append((int(key[:13]), key[14:].decode()))
        return sorted(due)

    def rebuild(self, orders: Mapping[str, dict]) -> int:
        """After a rebalance: hand everything due out again; the entries came with the table."""
        self.sent.clear()
        return len(self)

    def __len__(self) -> int:
        return sum(1 for partition in self.partitions()
                   for key in self.writer.table.data._db_for_partition(partition).keys() if key[:1] != b"_")
