"""The analytics table: the window state of streams/analytics/facts.py, RocksDB-backed and changelogged.

Keys start with the time their entry expires (13 digits, UTC ms), so RocksDB
keeps them in expiry order: dropping what expired reads one partition's keys
from the front and stops at the first live one, with nothing to index in
memory or rebuild after a restart. Every entry belongs to one row
(region|shop_id), whose facts all arrive on one partition of the facts topic,
so an entry is written, read and dropped only while that partition's events
are processed: in the partition's own RocksDB and changelog, as Faust requires.
"""
from __future__ import annotations

import faust

from .direct import PartitionBatch
from .json_table import decode, encode
from .orders import ROCKSDB_OPTIONS

TABLE_NAME = "analytics"


def define_analytics_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Analytics windows: counters, top lists, revisions and seen fact ids, keyed by expiry time.",
    )


def _expiry_prefix(expires: int) -> bytes:
    return b"%013d" % expires


def _key(expires: int, key: str) -> bytes:
    return _expiry_prefix(expires) + b"\x1f" + key.encode()


class AnalyticsTable:
    """The table as the Aggregator's Store, for the partition of the batch being processed (`batch`,
    set by the worker with `open`): written to the changelog and RocksDB when the batch is durable
    (tables/direct.py), with tombstones for dropped entries."""

    def __init__(self, table: faust.Table):
        self.table = table
        self.batch: PartitionBatch | None = None
        # Per partition, where the last expiry stopped: seeking past it skips the deleted keys'
        # tombstones, which RocksDB would otherwise step over on every scan until compaction.
        self._swept: dict[int, bytes] = {}

    def open(self, partition: int) -> PartitionBatch:
        self.batch = PartitionBatch(self.table, partition)
        return self.batch

    def get(self, expires: int, key: str) -> dict | None:
        data = self.batch.get(_key(expires, key))
        return None if data is None else decode(data)

    def put(self, expires: int, key: str, value: dict) -> None:
        self.batch.put(_key(expires, key), encode(value))

    def _time_key(self) -> bytes:
        return b"~stream-time\x1f%d" % self.batch.partition  # '~' sorts after every expiry prefix: never expires

    @property
    def time(self) -> int | None:
        data = self.batch.get(self._time_key())
        return None if data is None else int(data)

    @time.setter
    def time(self, value: int) -> None:
        self.batch.put(self._time_key(), b"%d" % value)

    def expire(self, now: int) -> int:
        partition = self.batch.partition
        bound = _expiry_prefix(now)
        dead = []
        for key in self.batch.stored_keys(self._swept.get(partition, b"")):
            if key[:len(bound)] > bound:
                break
            dead.append(key)
        for key in dead:
            self.batch.put(key, None)  # deleted, with a tombstone for this partition's changelog
        self._swept[partition] = _expiry_prefix(now + 1)
        return len(dead)
