"""Where a partition starts after a seek: a workaround of Faust's consumer, in one place.

aiokafka's seek_to_committed leaves a partition without a committed offset where
it stands, while Faust drops the records fetched for a partition that is not
active yet (during a changelog restore): the position then stands past a backlog
that was never processed, and a worker restarted after a crash before its first
commit sat idle on it. So input partitions without a committed offset start from
their beginning after every seek. (faust-streaming 0.15.3, aiokafka 0.14.0:
Consumer.seek_to_committed and the consumer thread's seek_to_beginning.)
"""
from __future__ import annotations

import faust

from orderflow.streams.kafka import topics


def rewind_uncommitted(app: faust.App) -> None:
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed
    inputs = {spec.name for spec in topics.ALL_TOPICS}

    async def seek() -> dict:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if tp.topic in inputs and not (offset and offset > 0)]
        if fresh:
            await consumer._thread.seek_to_beginning(*fresh)
        return committed

    consumer.seek_to_committed = seek
