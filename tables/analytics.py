"""The analytics table: the window state of streams/analytics.py, RocksDB-backed and changelogged.

Keys start with the time their entry expires (13 digits, UTC ms), so RocksDB
keeps them in expiry order: dropping what expired reads one partition's keys
from the front and stops at the first live one, with nothing to index in
memory or rebuild after a restart. Every entry belongs to one row
(region|shop_id), whose facts all arrive on one partition of the facts topic,
so an entry is written, read and dropped only while that partition's events
are processed: in the partition's own RocksDB and changelog, as Faust requires.
"""
from __future__ import annotations

import json

import faust
from faust.types import TP

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
    """The table as the Aggregator's Store, for one partition at a time (`partition`).

    Written without Faust's per-key path (a changelog message through its send buffer per
    write, which capped the agent at a few hundred facts/s): entries go straight into the
    partition's RocksDB and are queued as (key, value) changelog records, tombstones for
    dropped ones; `send_changelog` hands them to the producer, in order, to the partition's
    changelog partition, and records the last offset as persisted, as Faust does for its own
    writes. Faust flushes the producer before it commits the offsets of the facts, and
    restores the table from the changelog as ever.
    """

    def __init__(self, table: faust.Table):
        self.table = table
        self.partition: int = 0  # set by the agent for each partition's facts
        self.changes: list[tuple[bytes, bytes | None]] = []  # changelog records not sent yet
        # Per partition, where the last expiry stopped: seeking past it skips the deleted keys'
        # tombstones, which RocksDB would otherwise step over on every scan until compaction.
        self._swept: dict[int, bytes] = {}

    def _db(self):
        # Faust's RocksDB store (faust-streaming 0.15.3, pinned) keeps one database per partition.
        return self.table.data._db_for_partition(self.partition)

    def _write(self, key: bytes, data: bytes) -> None:
        self._db().put(key, data)
        self.changes.append((key, data))

    def get(self, expires: int, key: str) -> dict | None:
        data = self._db().get(_key(expires, key))
        return None if data is None else json.loads(data)

    def put(self, expires: int, key: str, value: dict) -> None:
        self._write(_key(expires, key), json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    def _time_key(self) -> bytes:
        return b"~stream-time\x1f%d" % self.partition  # '~' sorts after every expiry prefix: never expires

    @property
    def time(self) -> int | None:
        data = self._db().get(self._time_key())
        return None if data is None else int(data)

    @time.setter
    def time(self, value: int) -> None:
        self._write(self._time_key(), b"%d" % value)

    def expire(self, now: int) -> int:
        partition, db = self.partition, self._db()
        bound = _expiry_prefix(now)
        dead = []
        for key in db.keys(from_key=self._swept.get(partition, b"")):
            if key[:len(bound)] > bound:
                break
            dead.append(key)
        for key in dead:
            db.delete(key)
            self.changes.append((key, None))  # the tombstone, for this partition's changelog
        self._swept[partition] = _expiry_prefix(now + 1)
        return len(dead)

    async def send_changelog(self, producer) -> int:
        """Send the queued changes to this partition's changelog; return how many."""
        changes, self.changes = self.changes, []
        if not changes:
            return 0
        topic, partition = self.table.changelog_topic.get_topic_name(), self.partition
        for key, data in changes:
            sent = await producer.send(topic, key, data, partition, None, None)
        persisted = TP(topic, partition)

        def on_sent(future) -> None:
            # What Faust's own writes do: at startup, the restore starts after this offset.
            if not future.cancelled() and future.exception() is None:
                self.table.data.set_persisted_offset(persisted, future.result().offset)
        sent.add_done_callback(on_sent)
        return len(changes)
