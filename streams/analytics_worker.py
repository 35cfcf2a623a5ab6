"""Analytics in the worker: facts from the order agent, windows in a RocksDB table, metrics out.

The order agent's OrderBook observer derives the facts of every step and
queues each twice on `worker.extra` (sent with the step's outputs): keyed by
region|shop_id for the shop's row and by region| for the region-wide row.
Each row is thus aggregated on one partition of orderflow-analytics-facts,
by the worker that owns it, in that partition of the analytics table (Faust
lets a table be written only from its partition's stream); one row never
needs figures from another worker. The analytics agent publishes every
changed metric to order-analytics, keyed by the row.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from orderflow.tables.analytics import AnalyticsTable, define_analytics_table

from . import topics
from .analytics import Aggregator, facts, row_key, rows, zones
from .codec import SchemaError, codec_for_topic

if TYPE_CHECKING:
    from .app import Worker

log = logging.getLogger("orderflow")

# Facts are aggregated in batches, per partition: each changed metric is published once per
# batch and each table entry written once. A batch is what arrived within BATCH_WAIT seconds,
# at most BATCH_SIZE facts.
BATCH_SIZE = 1000
BATCH_WAIT = 0.2


def register_analytics(worker: Worker) -> None:
    app = worker.app
    raw = dict(key_serializer="raw", value_serializer="raw")
    facts_topic = app.topic(topics.ANALYTICS_FACTS.name, key_type=bytes, value_type=bytes, **raw)
    metrics_name = topics.ANALYTICS.name
    fact_codec, metric_codec = codec_for_topic(topics.ANALYTICS_FACTS), codec_for_topic(topics.ANALYTICS)
    store = AnalyticsTable(define_analytics_table(app, worker.config.partitions))
    aggregator = Aggregator(store, zones(worker.book.policy))

    def queue_facts(before: dict | None, after: dict | None, outputs: list[dict]) -> None:
        for fact in facts(before, after, outputs):
            for copy in rows(fact):
                worker.extra.append((facts_topic, row_key(copy), fact_codec.encode(copy)))

    worker.book.observers.append(queue_facts)

    @app.agent(facts_topic, name="analytics")
    async def aggregate(stream):
        producer = app.producer
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WAIT):
            aggregator.tally["batches"] += 1
            by_partition: dict[int, list] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            limit = worker.clock.now()
            for group in by_partition.values():
                decoded = []
                for event in group:
                    try:
                        decoded.append(fact_codec.decode(event.message.value))
                    except SchemaError as why:  # e.g. written by a newer version during a rolling upgrade
                        aggregator.tally["undecodable"] += 1
                        log.error("analytics: skipping fact at %s/%d/%d: %s", event.message.topic,
                                  event.message.partition, event.message.offset, why)
                # Every entry of these facts' rows belongs to this partition of the table.
                store.partition = group[0].message.partition
                records = aggregator.add_many(decoded, limit=limit)
                await store.send_changelog(producer)
                # Straight to the producer, not through Faust's send buffer (a task step per message):
                # Faust flushes this producer before it commits offsets, so a record is never lost
                # behind a committed offset either way.
                for record in records:
                    await producer.send(metrics_name, row_key(record), metric_codec.encode(record), None, None, None)
            await asyncio.sleep(0)  # let the order agent run between batches

    async def report(*_args, **_kwargs) -> None:
        tally = aggregator.tally
        log.info("analytics facts in=%d applied=%d duplicates=%d too_late=%d undecodable=%d; "
                 "missed_windows=%d expired_entries=%d batches=%d", tally["in"], tally["applied"], tally["duplicates"],
                 tally["too_late"], tally["undecodable"], tally["missed_windows"], tally["expired"], tally["batches"])

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)
