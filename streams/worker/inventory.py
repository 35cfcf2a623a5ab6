"""The inventory agent: warehouse events and the orders' stock requests, per SKU, in a RocksDB table.

Orders are keyed by order id and inventory by SKU, so the two meet through
topics keyed each way: the order agent publishes each line's request to
orderflow-stock-requests keyed by sku_id (co-partitioned with
inventory-events); this agent, on the SKU's partition, applies it to the
StockRoom and publishes problems to orderflow-stock-replies keyed by
order_id (co-partitioned with order-events), where the order agent takes
them. One partition's requests are handled one at a time, whichever worker
owns it, so the last unit goes to one order only.

Batches go through the worker's batch protocol (streams/worker/protocol.py).
A request is idempotent (a line's hold is looked up first, and stays, closed,
once released or consumed) and its answer is derived from the stored hold, so
a batch taken again after a crash publishes the same answers again.
"""
from __future__ import annotations

import functools
import logging

from orderflow.tables.inventory import define_inventory_table
from orderflow.tables.json_table import JsonTable

from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import SchemaError, codec_for_topic
from orderflow.streams.stock.room import StockRoom
from .protocol import BatchProtocol, Record
from .shell import Worker, by_partition

log = logging.getLogger("orderflow")

BATCH_SIZE = 2000
BATCH_WAIT = 0.05


def register_inventory(worker: Worker, protocol: BatchProtocol) -> StockRoom:
    app, clock = worker.app, worker.clock
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    source = app.topic(topics.INVENTORY_EVENTS.name, topics.STOCK_REQUESTS.name, **raw)
    replies_name, dead_letters = topics.STOCK_REPLIES.name, codec_for_topic(topics.DEAD_LETTERS)
    stock = JsonTable(define_inventory_table(app, worker.config.partitions))
    room = StockRoom(stock)

    def handle(message) -> list[Record]:
        if message.topic == topics.STOCK_REQUESTS.name:
            return [(replies_name, answer["order_id"].encode(), messages.REPLIES.encode(answer), None)
                    for answer in room.handle(messages.REQUESTS.decode(message.value))]
        try:
            record = messages.INVENTORY.decode(message.value)
        except SchemaError as why:
            room.tally.update({"in": 1, "dead_lettered": 1})
            return _dead_letters(message, [messages.rejected(message.topic, message.partition, message.offset,
                                                             f"undecodable message: {why}", clock.now())])
        return _dead_letters(message, room.apply(messages.event_from_record(record)))

    def _dead_letters(message, outputs: list[dict]) -> list[Record]:
        records = []
        for output in outputs:
            spec, record = messages.output_record(output, message.topic, message.partition, message.offset,
                                                  message.value)
            records.append((spec.name, messages.output_key(output), dead_letters.encode(record), None))
        return records

    def apply(number: int, group: list) -> tuple:
        """Step 1, without awaiting: every message of one partition's batch, in memory."""
        stock.batch = batch = stock.open(number)
        out: list[Record] = []
        try:
            for event in group:
                message = event.message
                try:
                    out += handle(message)
                except Exception as exc:  # one message's failure must not cost the rest of the batch
                    log.exception("%s/%d/%d could not be processed; dead-lettered", message.topic,
                                  message.partition, message.offset)
                    out += _dead_letters(message, [messages.rejected(
                        message.topic, message.partition, message.offset,
                        f"could not be processed: {type(exc).__name__}: {exc}", clock.now())])
            return out, [batch]
        finally:
            stock.batch = None

    @app.agent(source, name="inventory")
    async def keep_stock(stream):
        async for events in stream.noack_take(BATCH_SIZE, within=BATCH_WAIT):
            for number, group in by_partition(events):
                await protocol.process(topics.INVENTORY_EVENTS.name, number, group,
                                       functools.partial(apply, number, group), app.consumer.assignment)

    async def report(*_args, **_kwargs) -> None:
        tally = room.tally
        log.info("inventory: warehouse in=%d applied=%d dead_lettered=%d duplicates=%d; "
                 "requests reserve=%d release=%d consume=%d; lines reserved=%d short=%d",
                 tally["in"], tally["applied"], tally["dead_lettered"], tally["duplicates"],
                 tally["requests_reserve"], tally["requests_release"], tally["requests_consume"],
                 tally["reserved"], tally["short"])

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)
    return room
