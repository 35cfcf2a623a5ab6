"""Working around the embedded broker's (Tansu 0.6) wrong end offsets.

Tansu answers ListOffsets(LATEST) with the base offset of a partition's last
record batch + 1, so with batched producers it understates the end. Faust
trusts that figure to decide where a changelog restore stops, which would
leave state silently missing. Fetch responses carry the right highwater, so
on Tansu orderflow asks a fetch instead. Apache Kafka needs none of this.
"""
from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


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
