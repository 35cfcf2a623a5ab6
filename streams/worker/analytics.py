"""Analytics in the worker: facts from the order agent, windows in a RocksDB table, metrics out.

The order book's observer derives the facts of every step, each copied for
the shop's row and for the region-wide row; the order agent publishes them
with its batch (Worker.derivers), one message per row: keyed by region|shop_id
and by region|.
Each row is thus aggregated on one partition of orderflow-analytics-facts, by
the worker that owns it, in that partition of the analytics table; one row
never needs figures from another worker. The analytics agent takes the facts
in batches through the batch protocol (streams/worker/protocol.py) and
publishes every changed metric to order-analytics, keyed by the row.
"""
from __future__ import annotations

import functools
import logging

from orderflow.tables.analytics import AnalyticsTable, define_analytics_table

from orderflow.streams.analytics.facts import Aggregator, by_row, facts, row_key, rows, zones
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.codec import SchemaError, codec_for_topic
from .protocol import BatchProtocol, Record
from .shell import Worker, by_partition

log = logging.getLogger("orderflow")

# A batch is what arrived within BATCH_WAIT seconds, at most BATCH_SIZE facts: each changed
# metric is published once per batch and each table entry written once.
BATCH_SIZE = 5000
BATCH_WAIT = 1.0


def register_analytics(worker: Worker, protocol: BatchProtocol) -> None:
    app = worker.app
    raw = dict(key_serializer="raw", value_serializer="raw")
    facts_topic = app.topic(topics.ANALYTICS_FACTS.name, key_type=bytes, value_type=bytes, **raw)
    facts_name, metrics_name = topics.ANALYTICS_FACTS.name, topics.ANALYTICS.name
    fact_codec, metric_codec = codec_for_topic(topics.ANALYTICS_FACTS), codec_for_topic(topics.ANALYTICS)
    store = AnalyticsTable(define_analytics_table(app, worker.config.partitions))
    aggregator = Aggregator(store, zones(worker.book.policy))

    derived: list[dict] = []  # the fact copies of the order agent's batch in progress

    def derive_facts(before: dict | None, after: dict | None, outputs: list[dict]) -> None:
        derived.extend(copy for fact in facts(before, after, outputs) for copy in rows(fact))

    def take_facts() -> list[Record]:
        records = [(facts_name, key, fact_codec.encode({"facts": group}), None)
                   for key, group in by_row(derived).items()]
        derived.clear()
        return records

    worker.book.observers.append(derive_facts)
    worker.derivers.append(take_facts)

    def apply(number: int, group: list, limit: int) -> tuple:
        """Step 1, without awaiting: one partition's facts aggregated in memory; the changed metrics
        and the table batch."""
        decoded = []
        for event in group:
            try:
                decoded += fact_codec.decode(event.message.value)["facts"]
            except SchemaError as why:  # e.g. written by a newer version during a rolling upgrade
                aggregator.tally["undecodable"] += 1
                log.error("analytics: skipping facts at %s/%d/%d: %s", event.message.topic,
                          event.message.partition, event.message.offset, why)
        # Every entry of these facts' rows belongs to this partition of the table.
        batch = store.open(number)
        try:
            changed = aggregator.add_many(decoded, limit=limit)
        finally:
            store.batch = None
        return [(metrics_name, row_key(record), metric_codec.encode(record), None) for record in changed], [batch]

    @app.agent(facts_topic, name="analytics")
    async def aggregate(stream):
        async for events in stream.noack_take(BATCH_SIZE, within=BATCH_WAIT):
            aggregator.tally["batches"] += 1
            limit = worker.clock.now()
            for number, group in by_partition(events):
                await protocol.process(facts_name, number, group, functools.partial(apply, number, group, limit),
                                       app.consumer.assignment)

    async def report(*_args, **_kwargs) -> None:
        tally = aggregator.tally
        log.info("analytics facts in=%d applied=%d duplicates=%d too_late=%d undecodable=%d; "
                 "missed_windows=%d expired_entries=%d batches=%d", tally["in"], tally["applied"], tally["duplicates"],
                 tally["too_late"], tally["undecodable"], tally["missed_windows"], tally["expired"], tally["batches"])

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)
