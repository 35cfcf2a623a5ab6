"""Working around two quirks of the embedded broker (Tansu 0.6). Apache Kafka needs neither.

End offsets: Tansu answers ListOffsets(LATEST) with the base offset of a
partition's last record batch + 1, so with batched producers it understates
the end. Faust trusts that figure to decide where a changelog restore stops,
which would leave state silently missing. Fetch responses carry the right
highwater, so on Tansu orderflow asks a fetch instead.

Fetch waits: Tansu does not answer a waiting fetch when records arrive; it
holds it for the whole fetch_max_wait_ms, which Faust fixes at 1.5 s, so
every quiet moment added up to 1.5 s of latency. On Tansu the wait is cut to
FETCH_WAIT_MS.
"""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_WAIT_MS = 20


async def true_end_offsets(settings: dict, partitions) -> dict:
    """End offsets of `partitions` as fetch responses report them."""
    partitions = list(partitions)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**settings, enable_auto_commit=False, max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        plain = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        consumer.assign(plain)
        listed = await consumer.end_offsets(plain)
        for tp in plain:
            # The last batch starts at most one below the listed offset.
            consumer.seek(tp, max(listed[tp] - 1, 0))
        ends = {}
        for tp, original in zip(plain, partitions):
            while consumer.highwater(tp) is None:
                await consumer.getmany(tp, timeout_ms=200, max_records=1)
            ends[original] = max(consumer.highwater(tp), listed[tp])
        return ends
    finally:
        await consumer.stop()


def use_fetched_end_offsets(app, settings: dict) -> None:
    """Make Faust's table recovery read end offsets from fetch responses."""
    consumer = app.consumer

    async def highwaters(*partitions):
        return await true_end_offsets(settings, partitions)

    consumer.highwaters = highwaters


def shorten_fetch_wait(app) -> None:
    """Cut the worker consumer's fetch wait once Faust has created it (in its own thread)."""

    async def shorten() -> None:
        thread = app.consumer._thread
        while getattr(thread, "_consumer", None) is None:
            await asyncio.sleep(0.05)
        thread._consumer._fetcher._fetch_max_wait_ms = FETCH_WAIT_MS

    app.task(shorten)
