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

import logging
from typing import TYPE_CHECKING

from orderflow.tables.analytics import AnalyticsTable, define_analytics_table

from . import topics
from .analytics import Aggregator, facts, row_key, rows, zones
from .codec import SchemaError, codec_for_topic

if TYPE_CHECKING:
    from .app import Worker

log = logging.getLogger("orderflow")


def register_analytics(worker: Worker) -> None:
    app = worker.app
    raw = dict(key_serializer="raw", value_serializer="raw")
    facts_topic = app.topic(topics.ANALYTICS_FACTS.name, key_type=bytes, value_type=bytes, **raw)
    metrics_topic = app.topic(topics.ANALYTICS.name, **raw)
    fact_codec, metric_codec = codec_for_topic(topics.ANALYTICS_FACTS), codec_for_topic(topics.ANALYTICS)
    aggregator = Aggregator(AnalyticsTable(define_analytics_table(app, worker.config.partitions)),
                            zones(worker.book.policy))

    def queue_facts(before: dict | None, after: dict | None, outputs: list[dict]) -> None:
        for fact in facts(before, after, outputs):
            for copy in rows(fact):
                worker.extra.append((facts_topic, row_key(copy), fact_codec.encode(copy)))

    worker.book.observers.append(queue_facts)

    @app.agent(facts_topic, name="analytics")
    async def aggregate(stream):
        async for event in stream.events():
            try:
                fact = fact_codec.decode(event.message.value)
            except SchemaError as why:  # e.g. written by a newer version during a rolling upgrade
                aggregator.tally["undecodable"] += 1
                log.error("analytics: skipping fact at %s/%d/%d: %s", event.message.topic, event.message.partition,
                          event.message.offset, why)
                continue
            for record in aggregator.add(fact, limit=worker.clock.now()):
                metrics_topic.send_soon(key=event.message.key, value=metric_codec.encode(record))

    async def report(*_args, **_kwargs) -> None:
        tally = aggregator.tally
        log.info("analytics facts in=%d applied=%d duplicates=%d too_late=%d undecodable=%d; "
                 "missed_windows=%d expired_entries=%d", tally["in"], tally["applied"], tally["duplicates"],
                 tally["too_late"], tally["undecodable"], tally["missed_windows"], tally["expired"])

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)
