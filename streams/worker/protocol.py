"""The batch protocol: how a batch of one partition's input becomes durable output.

Every agent (orders, inventory, analytics) takes its input in batches without
Faust's automatic acks and, per partition, under that partition's lock:

1. applied: runs the pure core over the batch in memory (tables/direct.py
   keeps the batch's writes; nothing is on disk yet) and, for orders, fires
   the partition's due deadlines in the same step;
2. published: sends every output and derived record and awaits each delivery;
3. changelogged: sends each changed key's last value to its table's
   changelog and awaits those deliveries; then the batch's closing keys
   (the order agent's read positions, which say which inputs are applied),
   so that they are durable only once the rest is;
4. stored: writes each table's batch to RocksDB in one write batch, with
   the last changelog offset that Faust's recovery resumes from;
5. acked: acknowledges the inputs, which lets Faust commit their offsets.

What a crash leaves (tests/worker/test_batch_protocol.py kills the worker at each
step): before 2 or 3 completes, disk and changelog hold the state before the
batch and the inputs are not committed, so the batch runs again and publishes
the same output ids (at least once, copies identical); after 3, the changelog
holds the batch (a restore brings it back) and the inputs run again as
duplicates that change nothing; their outputs were delivered in step 2. So
state that survives always implies its outputs were delivered. The order
agent goes further: inputs before its stored read position are done, not
applied again, so none is judged anew against state that moved on since
(an order forgotten meanwhile would take it as new).

Any failure from step 1 on (a record the broker refuses, a RocksDB error, a
bug) stops the worker before the batch is acknowledged: it says so loudly and
exits, and its restart takes the batch again from the committed offset. (An
event whose own step raises is not such a failure: the agents dead-letter it
and go on.) Going on instead would let later batches be acknowledged past
the failed one, which Faust then commits.

Two test-only settings drive fault injection: `crash_after = "STEP:N"` kills
the process (SIGKILL) the N-th time a batch with records to publish reaches
STEP, and `fail_delivery = "TOPIC:N"` makes the N-th record sent to TOPIC fail.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from typing import Awaitable, Callable, Iterable

from aiokafka.errors import KafkaError

from orderflow.tables.direct import PartitionBatch

from .metrics import Metrics

log = logging.getLogger("orderflow")

STEPS = ("applied", "published", "changelogged", "stored", "acked")

# (topic, key, value, partition or None for the key's partition)
Record = tuple[str, bytes | None, bytes | None, int | None]


class DeliveryFailed(Exception):
    """The broker refused a record of the batch: nothing of it was stored or acknowledged."""


class Revoked(Exception):
    """The partition left this worker while its batch was in flight: the new owner takes it again."""


def _plan(spec: str, what: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.rpartition(":")
    if not name or not count.isdigit() or int(count) < 1:
        raise ValueError(f"{what}: expected NAME:N (N >= 1), got {spec!r}")
    return name, int(count)


class BatchProtocol:
    def __init__(self, producer, stop: Callable[[str], Awaitable[None]], crash_after: str = "",
                 fail_delivery: str = "", metrics: Metrics | None = None):
        self._producer = producer
        self.metrics = metrics or Metrics()
        self._stop = stop
        self._crash = _plan(crash_after, "crash_after")
        if self._crash and self._crash[0] not in STEPS:
            raise ValueError(f"crash_after: the step must be one of {', '.join(STEPS)}")
        self._fail = _plan(fail_delivery, "fail_delivery")
        self._reached: Counter = Counter()
        self._sent: Counter = Counter()

    def _checkpoint(self, step: str, records: list) -> None:
        if not records:
            return
        self._reached[step] += 1
        if self._crash == (step, self._reached[step]):
            log.warning("crash_after=%s:%d: killing this worker", step, self._reached[step])
            os.kill(os.getpid(), signal.SIGKILL)

    async def _send(self, topic: str, key, value, partition) -> asyncio.Future:
        self._sent[topic] += 1
        if self._fail == (topic, self._sent[topic]):  # as the producer refuses a record too large
            raise KafkaError(f"fail_delivery={topic}:{self._sent[topic]}: refused on purpose")
        return await self._producer.send(topic, key, value, partition, None, None)

    async def deliver(self, records: Iterable[Record]) -> list:
        """Send every record and wait until each is delivered; their metadata, in order."""
        futures, topic, topics = [], None, Counter()
        try:
            for topic, key, value, partition in records:
                futures.append(await self._send(topic, key, value, partition))
                topics[topic] += 1
        except Exception as exc:  # refused before it was queued, e.g. larger than a request may be
            await asyncio.gather(*futures, return_exceptions=True)
            self.metrics.delivery_failures.inc()
            raise DeliveryFailed(f"a record for {topic} was refused: {exc!r}") from exc
        results = []
        for future in futures:  # in order: most are done by the time the first is
            try:
                results.append(await future)
            except Exception as exc:
                self.metrics.delivery_failures.inc()
                raise DeliveryFailed(f"a record was not delivered: {exc!r}") from exc
        for topic, count in topics.items():
            self.metrics.delivered.labels(topic).inc(count)
        return results

    async def fail(self, where: str, exc: BaseException) -> None:
        """A batch of `where` failed: stop the worker before anything more is acknowledged."""
        log.error("%s: the batch failed", where, exc_info=exc)
        await self._stop(f"{where}: {exc!r}; nothing of the batch was acknowledged, a restart takes it again")

    async def complete(self, where: str, records: list[Record], batches: list[PartitionBatch],
                       owned: Callable[[], bool], ack: Callable[[], Awaitable[None]], inputs: int = 0) -> bool:
        """Steps 2 to 5 for a batch of `where` ("topic/partition") whose core ran (step 1) over `inputs`
        messages: `records` to publish, the table `batches` it wrote, `owned()` while its partition is
        still this worker's, `ack()` its inputs. False if the batch was given up (the partition moved,
        or the worker stops)."""
        started = time.monotonic()
        try:
            await self._complete(records, batches, owned, ack)
            self.metrics.observe_batch(where.split("/")[0], inputs, started)
            return True
        except Revoked:
            log.info("%s moved to another worker mid-batch; its new owner takes the batch again", where)
        except Exception as exc:
            await self.fail(where, exc)
        return False

    async def process(self, topic: str, number: int, events: list,
                      apply: Callable[[], tuple[list[Record], list[PartitionBatch]]],
                      assigned: Callable[[], Iterable]) -> bool:
        """The whole protocol for one partition's batch whose events are all acknowledged once it is
        durable: `apply()` is step 1 (records to publish, table batches written); `assigned()` gives
        the topic partitions this worker holds."""
        where = f"{topic}/{number}"
        try:
            records, batches = apply()
        except Exception as exc:
            await self.fail(where, exc)
            return False

        async def ack() -> None:
            for event in events:
                event.ack()

        def owned() -> bool:
            return any(tp.topic == topic and tp.partition == number for tp in assigned())
        return await self.complete(where, records, batches, owned, ack, len(events))

    async def _complete(self, records, batches, owned, ack) -> None:
        self._checkpoint("applied", records)
        await self.deliver(records)
        self._checkpoint("published", records)
        changes = [(batch, batch.records(), batch.records(closing=True)) for batch in batches]
        changes = [change for change in changes if change[1] or change[2]]
        if not owned():
            raise Revoked()
        last_offset: dict[int, int] = {}
        # Every changed key's record, then the closing ones, which vouch that the others are durable.
        for part in ([(n, record) for n, change in enumerate(changes) for record in change[1]],
                     [(n, record) for n, change in enumerate(changes) for record in change[2]]):
            metadata = await self.deliver((changes[n][0].table.changelog_topic.get_topic_name(), key, value,
                                           changes[n][0].partition) for n, (key, value) in part)
            last_offset.update((n, meta.offset) for (n, _), meta in zip(part, metadata))  # the last wins
        self._checkpoint("changelogged", records)
        if not owned():
            raise Revoked()
        for n, (batch, changed, closing) in enumerate(changes):
            batch.store(changed + closing, last_offset[n])
        self._checkpoint("stored", records)
        await ack()
        self._checkpoint("acked", records)
