"""What every agent of the worker shares: the Faust settings, the Worker, and how the worker stops."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import faust

from orderflow.tables.json_table import JsonTable

from orderflow.streams.kafka.admin import client_settings
from .clock import AcceleratedClock, SystemClock
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.config import Config, web_url
from .metrics import Metrics
from .protocol import Record

log = logging.getLogger("orderflow")

APP_ID = "orderflow"
STOPPED_EXIT_STATUS = 3
COMMIT_BEFORE_STOP_S = 5.0


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


def advertised_url(config: Config) -> str:
    """The URL the other workers reach this one's web server at."""
    return web_url(config, config.web_advertise or (config.web_bind if config.web_bind not in ("0.0.0.0", "::")
                                                    else socket.gethostname()))


def server_tls(config: Config) -> ssl.SSLContext | None:
    if not config.web_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.web_cert, config.web_key or None)
    return context


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
        canonical_url=advertised_url(config),
        web_ssl_context=server_tls(config),
        # Faust's own table/graph/stats pages would expose order data without a token.
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        # Outputs are published at least once with deterministic ids by the batch protocol
        # (streams/worker/protocol.py); Faust's exactly-once mode is not used.
        processing_guarantee="at_least_once",
        # Faust would wait, at every rebalance and stop, until each message handed to an agent
        # is acknowledged; the protocol acknowledges only what is durable and leaves the rest
        # (a batch in flight, records dropped for a re-read) to be read again from the
        # committed offset, so that wait is not needed and could last until the session ends.
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        # No standby copies of tables: Faust's fetcher drops records of a partition after a seek that
        # raced an earlier fetch, and a standby then stores later records and their offset over the
        # hole (a scale-out run: a standby claimed offset 2946 of a partition and lacked 88 of its
        # orders; taken over, it would never have read them). A partition assigned here is read from
        # its changelog in bulk instead, from where its local state stands (streams/worker/restore.py).
        table_standby_replicas=0,
        broker_commit_interval=config.commit_interval,
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


def describe(output: dict) -> str:
    """One line for a person watching the worker."""
    if output["output"] == "status_change":
        return f"{output['order_id']}: {output['from_status'] or '-'} -> {output['to_status']} ({output['reason']})"
    what = output.get("kind") or output.get("reason")
    return f"{output['order_id']}: {output['output']} {what}"


def by_partition(events: Iterable) -> Iterator[tuple[int, list]]:
    """The events of a batch grouped by partition number, each group in arrival order."""
    groups: dict[int, list] = {}
    for event in events:
        groups.setdefault(event.message.partition, []).append(event)
    return iter(groups.items())


async def stop_worker(app: faust.App, reason: str) -> None:
    """Stop at once and loudly, with what the other partitions finished committed: a restart
    takes the unfinished batches again from their committed offsets."""
    log.critical("stopping the worker: %s", reason)
    try:
        # Bounded: the failure may be an outage, in which the commit's producer flush would hang.
        await asyncio.wait_for(app.consumer.commit(), COMMIT_BEFORE_STOP_S)
    except Exception:  # nothing more to lose: what is not committed is taken again
        log.warning("could not commit before stopping", exc_info=True)
    finally:
        logging.shutdown()
        # The command's own line too: os._exit skips the CLI's report, and the log may be a file.
        sys.stderr.write(f"Error: the worker stopped: {reason}\n")
        sys.stderr.flush()
        os._exit(STOPPED_EXIT_STATUS)


@dataclass
class Worker:
    """What create_app built: the Faust app, the order book it drives and its tables."""
    app: faust.App
    config: Config
    orders_table: faust.Table
    orders: JsonTable
    book: OrderBook
    clock: SystemClock | AcceleratedClock
    echo: bool = False
    # Each gives (and forgets) the records derived from the order book's steps of the batch in
    # progress (analytics facts), which the order agent publishes with the batch's outputs.
    derivers: list[Callable[[], list[Record]]] = field(default_factory=list)
    pending_deadlines: Callable[[], int] = lambda: 0
    # The order agent's partitions for /ready and the metrics (streams/worker/orders.py, readiness).
    readiness: Callable[[], dict] = lambda: {"assigned": [], "recovered": [], "lags": {}, "settled": False}
    metrics: Metrics = field(default_factory=Metrics)

    def take_derived(self) -> list[Record]:
        return [record for take in self.derivers for record in take()]
