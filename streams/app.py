"""The Faust shell around the order book: one agent, one timer, one table.

The agent reads upstream events and timer ticks (co-partitioned, keyed by
order_id), applies them through the OrderBook to the RocksDB-backed orders
table, and publishes the outputs. The timer pops due deadlines from the
in-memory index and sends a tick for each order; a tick is idempotent, so a
duplicate or a tick for an order that moved on changes nothing.
"""
from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import faust
from aiokafka import TopicPartition
from faust.types import TP, EventT

from orderflow.tables.direct import PartitionWriter
from orderflow.tables.json_table import JsonTable
from orderflow.tables.orders import define_orders_table

from . import messages, topics
from .admin import client_settings
from .analytics_worker import register_analytics
from .clock import AcceleratedClock, SystemClock
from .codec import SchemaError, codec_for_topic
from .config import Config
from .inventory_worker import register_inventory
from .lifecycle import Policy
from .order_book import OrderBook
from .read_positions import ReadPositions, Verdict
from .tansu import shorten_fetch_wait, use_fetched_end_offsets
from .views import register_views

log = logging.getLogger("orderflow")

APP_ID = "orderflow"

# The order agent takes what arrived within BATCH_WAIT seconds, at most BATCH_SIZE
# messages, at a time: Faust's per-message overhead and the changelog (one record
# per order written, not per event) shrink; BATCH_WAIT is what it adds to latency.
BATCH_SIZE = 500
BATCH_WAIT = 0.01


def _credentials(config: Config):
    settings = client_settings(config)
    protocol = settings["security_protocol"]
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=settings["sasl_plain_username"], password=settings["sasl_plain_password"],
            mechanism=settings["sasl_mechanism"], ssl_context=settings.get("ssl_context"),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(settings["ssl_context"])
    return None


def faust_settings(config: Config) -> dict:
    settings = dict(
        broker=[f"kafka://{server}" for server in config.broker.split(",")],
        broker_credentials=_credentials(config),
        store="rocksdb://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication,
        topic_allow_declare=True,
        web_enabled=True,
        web_bind=config.web_bind,
        web_port=config.web_port,
        web_host=config.web_bind if config.web_bind not in ("0.0.0.0", "::") else socket.gethostname(),
        # Faust's own table/graph/stats pages would expose order data without a token.
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        # Outputs are published at least once with deterministic ids; Faust's
        # exactly-once mode is not used (see README, guarantees).
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # A dead letter carries the rejected message whole: room for an input at
        # Kafka's usual 1 MiB limit plus the reason. (The dead-letter topic's
        # max.message.bytes must allow it on a real cluster.)
        producer_max_request_size=2 * 1024 * 1024,
    )
    if config.tansu:
        settings.update(
            # Short group timeouts: a worker joins in about 2 s instead of 30 s.
            broker_session_timeout=4.0,
            broker_rebalance_timeout=4.0,
            broker_heartbeat_interval=1.0,
        )
    return settings


def rewind_uncommitted(app: faust.App) -> None:
    """Start input partitions that have no committed offset from their beginning after every seek.

    aiokafka's seek_to_committed leaves such a partition where it stands, while
    Faust drops the records fetched for a partition that is not active yet (during
    a changelog restore): the position then stands past a backlog that was never
    processed, and a worker restarted after a crash before its first commit sat
    idle on it. (faust-streaming 0.15.3, aiokafka 0.14.0.)
    """
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


def describe(output: dict) -> str:
    """One line for a person watching the worker."""
    if output["output"] == "status_change":
        return f"{output['order_id']}: {output['from_status'] or '-'} -> {output['to_status']} ({output['reason']})"
    what = output.get("kind") or output.get("reason")
    return f"{output['order_id']}: {output['output']} {what}"


@dataclass
class Worker:
    """What create_app built: the Faust app and the order book it drives."""
    app: faust.App
    config: Config
    orders_table: faust.Table
    book: OrderBook
    clock: SystemClock | AcceleratedClock
    # Messages other parts of the worker (analytics) queue while an event is
    # handled, as (topic, key, value); the agent sends them with its outputs.
    extra: list = field(default_factory=list)
    # publish(outputs, event): sends core outputs (and `extra`) for the input `event`.
    publish: Callable[[list[dict], EventT], Awaitable[None]] | None = None


def create_app(config: Config, policy: Policy, clock, echo: bool = False) -> Worker:
    app = faust.App(APP_ID, **faust_settings(config))
    rewind_uncommitted(app)
    if config.tansu:
        use_fetched_end_offsets(app, client_settings(config))
        shorten_fetch_wait(app)
    orders_table = define_orders_table(app, config.partitions)

    def committed(topic: str, partition: int) -> int:
        """The partition's committed offset (the next to read; 0 when none). Faust keeps it
        from the seek at assignment and from each commit (private, pinned at 0.15.3)."""
        return app.consumer._committed_offset.get(TP(topic, partition)) or 0

    def settled(source: list) -> bool:
        topic, partition, offset = source
        return offset < committed(topic, partition)

    orders = PartitionWriter(orders_table)
    book = OrderBook(JsonTable(orders), policy, settled=settled)
    worker = Worker(app, config, orders_table, book, clock)

    source = app.topic(topics.ORDER_EVENTS.name, topics.TIMER_TICKS.name, topics.STOCK_REPLIES.name,
                       key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    ticks_name = topics.TIMER_TICKS.name
    codecs = {spec.name: codec_for_topic(spec) for spec in (*topics.OUTPUT_TOPICS.values(), topics.STOCK_REQUESTS)}

    async def publish(produced: list[dict], event: EventT) -> None:
        # Straight to the Kafka producer: awaiting a send only waits for the record
        # to join a batch, and Faust flushes the producer before it commits offsets,
        # so an output is never lost behind a committed offset. (Faust's send_soon
        # buffer moves one record per event-loop step: it capped the worker.)
        message = event.message
        for output in produced:
            spec, record = messages.output_record(output, message.topic, message.partition, message.offset,
                                                  message.value)
            await app.producer.send(spec.name, messages.output_key(output), codecs[spec.name].encode(record),
                                    None, None, None)
            if echo and output["output"] != "stock_request":
                print(describe(output), flush=True)
        while worker.extra:
            topic, key, value = worker.extra.pop(0)
            await app.producer.send(topic.get_topic_name(), key, value, None, None, None)

    # Stream time: per partition of order-events, the latest event time processed
    # (never ahead of the clock). Events are applied at stream time, as a replay
    # does, so a backlog after downtime is not judged by the wall clock.
    stream_time: dict = {}
    positions = ReadPositions()

    def handle(event: EventT) -> list[dict]:
        message = event.message
        source = [message.topic, message.partition, message.offset]
        if message.topic == topics.TIMER_TICKS.name:
            tick = messages.TICKS.decode(message.value)
            return book.fire(tick["order_id"], tick["due"], source)
        if message.topic == topics.STOCK_REPLIES.name:
            return book.answer(messages.REPLIES.decode(message.value), source)
        try:
            record = messages.EVENTS.decode(message.value)
        except SchemaError as why:
            book.count_undecodable()
            return [messages.undecodable(*source, why, stream_time.get(message.tp) or clock.now())]
        event_time = record["event_time"]
        now = max(stream_time.get(message.tp, event_time), min(event_time, clock.now()))
        stream_time[message.tp] = now
        return book.apply(messages.event_from_record(record), now, source)

    @app.on_partitions_revoked.connect
    async def forget_partitions(_app, revoked, **_kwargs) -> None:
        # A partition that comes back is judged afresh by its committed offset.
        for tp in revoked:
            positions.forget(tp)
            stream_time.pop(tp, None)

    def safe_time() -> int:
        """Deadlines up to this time may fire: the clock, unless a partition is still
        working through a backlog; then that partition's stream time."""
        now = clock.now()
        for tp in app.consumer.assignment():
            if tp.topic != topics.ORDER_EVENTS.name:
                continue
            highwater = app.consumer.highwater(tp)
            # Before this worker processed any event of the partition, what is committed
            # counts (the fetch position may already stand past a backlog not yet processed).
            done = positions.next_offset(tp, committed(tp.topic, tp.partition))
            if highwater is None or done < highwater:
                now = min(now, stream_time.get(tp, -1))
        return now

    async def skipped_ahead(message) -> bool:
        """True if the message must not be processed now (see read_positions)."""
        tp, offset = message.tp, message.offset
        base = committed(message.topic, message.partition)
        if positions.unsure(tp, offset, base):
            # Faust learns the committed offset at its seek, which can come after the first records.
            thread = app.consumer._thread
            base = await thread.call_thread(thread._ensure_consumer().committed,
                                            TopicPartition(tp.topic, tp.partition)) or 0
        verdict = positions.judge(tp, offset, base)
        if verdict is Verdict.REWIND:
            start = positions.rewind_to(tp)
            log.warning("%s/%d: offsets %d..%d were never delivered; reading them again",
                        message.topic, message.partition, start, offset - 1)
            await app.consumer.seek(tp, start)
        return verdict is not Verdict.PROCESS

    @app.agent(source, name="orders")
    async def process(stream):
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WAIT):
            handled = []
            for event in events:
                if await skipped_ahead(event.message):
                    continue
                orders.partition = event.message.partition  # inputs are co-partitioned with the table
                handled.append((handle(event), event))
            await orders.send_changelog(app.producer)
            for outputs, event in handled:
                await publish(outputs, event)

    @orders_table.on_recover
    async def reindex() -> None:
        pending = book.rebuild_index()
        log.info("orders recovered: %d deadlines pending on this worker", pending)

    @app.timer(interval=config.timer_interval)
    async def fire_due() -> None:
        for due, order_id in book.index.pop_due(safe_time()):
            await app.producer.send(ticks_name, order_id.encode(),
                                    messages.TICKS.encode({"order_id": order_id, "due": due}), None, None, None)

    async def report(*_args, **_kwargs) -> None:
        tally = book.tally
        log.info("events in=%d applied=%d dead_lettered=%d duplicates=%d buffered=%d; deadlines indexed=%d",
                 tally["in"], tally["applied"], tally["dead_lettered"], tally["duplicates"], tally["buffered"],
                 len(book.index))

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)

    worker.publish = publish
    register_analytics(worker)
    register_inventory(worker)
    register_views(worker)
    return worker
