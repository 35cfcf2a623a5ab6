"""Writing a Faust RocksDB table one partition at a time, without Faust's per-key path.

Faust sends a changelog message for every table write through its send
buffer, one message per event-loop step, and makes the agent wait when the
buffer fills: that capped a worker at a few hundred events a second. Here a
write goes straight into the partition's RocksDB and is queued as a (key,
value) changelog record (None: a tombstone); `send_changelog` hands the queue
to the producer, to each partition's changelog partition, and records the last
offset as persisted, as Faust does for its own writes. Faust flushes
the producer before it commits the input offsets, and restores the table from
the changelog as ever.

Every key written must belong to the partition being processed (`partition`,
set by the agent): the input is co-partitioned with the table's keys.
Relies on the RocksDB store of faust-streaming 0.15.3 (pinned): one database
per partition (`_db_for_partition`) and `set_persisted_offset`.
"""
from __future__ import annotations

import faust
from faust.types import TP


class PartitionWriter:
    def __init__(self, table: faust.Table):
        self.table = table
        self.partition: int = 0
        # Changelog records not sent yet, per partition: only a key's last value is sent, so a
        # batch that writes one order several times sends it once (the changelog is compacted).
        self.changes: dict[int, dict[bytes, bytes | None]] = {}

    def db(self):
        return self.table.data._db_for_partition(self.partition)

    def read(self, key: bytes) -> bytes | None:
        return self.db().get(key)

    def write(self, key: bytes, data: bytes | None) -> None:
        """Put (or delete, with None) now; the changelog record waits for send_changelog."""
        if data is None:
            self.db().delete(key)
        else:
            self.db().put(key, data)
        self.changes.setdefault(self.partition, {})[key] = data

    async def send_changelog(self, producer) -> int:
        """Send the queued records to their partitions' changelog; return how many."""
        changes, self.changes = self.changes, {}
        topic = self.table.changelog_topic.get_topic_name()
        for partition, records in changes.items():
            for key, data in records.items():
                sent = await producer.send(topic, key, data, partition, None, None)
            persisted = TP(topic, partition)

            def on_sent(future, persisted=persisted) -> None:
                # What Faust's own writes do: at startup, the restore starts after this offset.
                if not future.cancelled() and future.exception() is None:
                    self.table.data.set_persisted_offset(persisted, future.result().offset)
            sent.add_done_callback(on_sent)
        return sum(len(records) for records in changes.values())
