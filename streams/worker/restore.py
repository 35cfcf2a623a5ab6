"""Restoring a table partition assigned to this worker: its changelog read in bulk, in one place.

Faust restores a changelog record by record through its consumer path (a
task and a wait per record): about 90 us a record on a 2-core machine, some
15 times what a bare consumer takes to read the same records. And that path
drops records after a seek that raced an earlier fetch of the partition (a
recovery restarted by a rebalance), then stores later ones with their offset
over the hole. So every partition newly assigned to this worker is read here
instead, just before Faust's recovery, from where its local state stands (the
start for a new or wiped disk, the stored offset for a partition it held
before): a plain consumer, which delivers every record from its position,
reads the changelog to its end (as fetch responses report it, which the
embedded broker gets right) and each fetch is written to the partition's
RocksDB as one write batch with the offset it reached, in Faust's format
(tables/direct.py). Faust's recovery then starts from that offset and finds
at most what was written meanwhile.

How it hooks in (faust-streaming 0.15.3, pinned): each table's public
`on_rebalance`, which opens the partitions' databases, is wrapped; Faust
calls it before its recovery reads each partition's persisted offset
(TableManager.on_rebalance, then Recovery.add_active), which
tests/worker/test_bulk_restore.py checks. The restore runs within the rebalance:
the group's next rebalance waits for it.
"""
from __future__ import annotations

import logging
import time

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from orderflow.tables.direct import PartitionBatch

from orderflow.streams.kafka.tansu import FETCH_WAIT_MS

log = logging.getLogger("orderflow")

FETCH_BYTES = 8 * 1024 * 1024  # per partition and fetch: a write batch of a few MiB


def restore_in_bulk(app: faust.App, settings: dict) -> None:
    """Restore every table's newly assigned partitions in bulk (`settings`: the aiokafka client settings)."""
    reader = Reader(settings)
    for table in app.tables.values():
        table.on_rebalance = _restoring(app, table, table.on_rebalance, reader)
    app.on_before_shutdown.connect(lambda *_args, **_kwargs: reader.close())


class Reader:
    """One consumer, outside any group, started when first needed and kept for later rebalances."""

    def __init__(self, settings: dict):
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            # A short fetch wait: each seek and end-of-read check waits for a fetch in flight, and the
            # embedded broker holds every fetch for its whole wait.
            consumer = AIOKafkaConsumer(**self._settings, enable_auto_commit=False, auto_offset_reset="earliest",
                                        max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=4 * FETCH_BYTES,
                                        fetch_max_wait_ms=FETCH_WAIT_MS)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def _restoring(app: faust.App, table: faust.Table, on_rebalance, reader: Reader):
    async def restoring_on_rebalance(assigned, revoked, newly_assigned, generation_id=0) -> None:
        await on_rebalance(assigned, revoked, newly_assigned, generation_id)
        changelog = table.changelog_topic.get_topic_name()
        # Tables keep no standby copies; a leader of an older version may still hand out some: those are
        # left to Faust.
        standbys = app.assignor.assigned_standbys()
        mine = [tp for tp in newly_assigned if tp.topic == changelog and tp not in standbys]
        if mine:
            await read_changelog(table, mine, reader)
    return restoring_on_rebalance


async def read_changelog(table: faust.Table, tps: list[TP], reader: Reader) -> int:
    """Write the changelog of `tps` (partitions of `table`), from the offset after the one their
    databases hold, to their databases; the records read."""
    started, count = time.monotonic(), 0
    consumer = await reader.consumer()
    partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
    consumer.assign(list(partitions))
    try:
        starts = {}
        for tp, faust_tp in partitions.items():
            stored = table.persisted_offset(faust_tp)
            starts[tp] = 0 if stored is None else stored + 1
            consumer.seek(tp, starts[tp])
        # Nothing to read past the listed end; the listed end may fall short (the embedded broker's),
        # so a partition is done once its position reaches the fetched highwater, or the listed end with
        # nothing more fetched. Stopping short costs only time: Faust's recovery reads on from the offset
        # stored.
        listed = await consumer.end_offsets(list(partitions))
        left = {tp for tp in partitions if listed[tp] > starts[tp]}
        while left:
            fetched = await consumer.getmany(*left, timeout_ms=500)
            for tp, records in fetched.items():
                PartitionBatch(table, tp.partition).store([(r.key, r.value) for r in records], records[-1].offset)
                count += len(records)
            for tp in list(left):
                position, highwater = await consumer.position(tp), consumer.highwater(tp)
                if (highwater is not None and position >= highwater) or (tp not in fetched and position >= listed[tp]):
                    left.remove(tp)
    finally:
        consumer.unsubscribe()
    log.info("%s: restored %d changelog records of partitions %s in %.1f s", table.name, count,
             sorted(tp.partition for tp in tps), time.monotonic() - started)
    return count
