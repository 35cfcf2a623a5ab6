"""The worker: one Faust app with the order, inventory and analytics agents and the order API.

Every agent turns its input into durable output through one batch protocol
(streams/worker/protocol.py); this module only wires them together.
"""
from __future__ import annotations

import functools
import logging

import faust

from orderflow.tables.json_table import JsonTable
from orderflow.tables.orders import define_orders_table

from orderflow.streams.api.views import register_views
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.config import Config
from orderflow.streams.kafka.admin import client_settings
from orderflow.streams.kafka.tansu import shorten_fetch_wait, use_fetched_end_offsets
from orderflow.streams.lifecycle import Policy
from .analytics import register_analytics
from .commits import commit_acked_as_a_set
from .inventory import register_inventory
from .metrics import register_health
from .orders import register_orders
from .positions import Committed
from .protocol import BatchProtocol
from .recovery import rewind_uncommitted
from .restore import restore_in_bulk
from .shell import APP_ID, Worker, faust_settings, stop_worker

log = logging.getLogger("orderflow")


def create_app(config: Config, policy: Policy, clock, echo: bool = False) -> Worker:
    app = faust.App(APP_ID, **faust_settings(config))
    rewind_uncommitted(app)
    commit_acked_as_a_set(app)
    if config.tansu:
        use_fetched_end_offsets(app, client_settings(config))
        shorten_fetch_wait(app)
    orders_table = define_orders_table(app, config.partitions)
    orders = JsonTable(orders_table, listed=True)
    worker = Worker(app, config, orders_table, orders, OrderBook(orders, policy), clock, echo=echo)
    protocol = BatchProtocol(app.producer, functools.partial(stop_worker, app), config.crash_after,
                             config.fail_delivery, worker.metrics)
    committed = Committed(client_settings(config), APP_ID)
    app.on_before_shutdown.connect(lambda *_args, **_kwargs: committed.close())

    register_orders(worker, protocol, committed)
    register_analytics(worker, protocol)
    register_inventory(worker, protocol)
    register_views(worker)
    register_health(worker)
    worker.metrics.watch(worker)
    restore_in_bulk(app, client_settings(config))

    async def report(*_args, **_kwargs) -> None:
        tally = worker.book.tally
        log.info("events in=%d applied=%d dead_lettered=%d duplicates=%d buffered=%d; deadlines indexed=%d; "
                 "batches=%d", tally["in"], tally["applied"], tally["dead_lettered"], tally["duplicates"],
                 tally["buffered"], worker.pending_deadlines(), tally["batches"])

    app.timer(interval=10.0)(report)
    app.on_before_shutdown.connect(report)
    return worker
