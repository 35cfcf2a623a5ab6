"""The inventory agent: warehouse events and the orders' stock requests, per SKU, in a RocksDB table.

Orders are keyed by order id and inventory by SKU, so the two meet through
topics keyed each way: the order agent publishes each line's request to
orderflow-stock-requests keyed by sku_id (co-partitioned with
inventory-events); this agent, on the SKU's partition, applies it to the
StockRoom and publishes problems to orderflow-stock-replies keyed by
order_id (co-partitioned with order-events), where the order agent takes
them. One partition's requests are handled one at a time, whichever worker
owns it, so the last unit goes to one order only.

Crash safety needs no outbox here: a request is idempotent (a line's hold is
looked up first, and stays, closed, once released or consumed) and its answer
is derived from the stored hold, so a redelivered request publishes the same
answer again.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from orderflow.tables.direct import PartitionWriter
from orderflow.tables.inventory import define_inventory_table
from orderflow.tables.json_table import JsonTable

from . import messages, topics
from .codec import SchemaError
from .inventory import StockRoom

if TYPE_CHECKING:
    from .app import Worker

log = logging.getLogger("orderflow")


def register_inventory(worker: Worker) -> StockRoom:
    app = worker.app
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    source = app.topic(topics.INVENTORY_EVENTS.name, topics.STOCK_REQUESTS.name, **raw)
    replies = app.topic(topics.STOCK_REPLIES.name, **raw)
    stock = PartitionWriter(define_inventory_table(app, worker.config.partitions))
    room = StockRoom(JsonTable(stock))

    def handle(message) -> list[dict]:
        if message.topic == topics.STOCK_REQUESTS.name:
            for answer in room.handle(messages.REQUESTS.decode(message.value)):
                worker.extra.append((replies, answer["order_id"].encode(), messages.REPLIES.encode(answer)))
            return []
        try:
            record = messages.INVENTORY.decode(message.value)
        except SchemaError as why:
            room.tally.update({"in": 1, "dead_lettered": 1})
            return [messages.undecodable(message.topic, message.partition, message.offset, why, worker.clock.now())]
        return room.apply(messages.event_from_record(record))

    @app.agent(source, name="inventory")
    async def keep_stock(stream):
        async for event in stream.events():
            stock.partition = event.message.partition  # inputs are co-partitioned with the table
            outputs = handle(event.message)
            await stock.send_changelog(app.producer)
            await worker.publish(outputs, event)

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
