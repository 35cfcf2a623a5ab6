"""The orderflow command line."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import click

from orderflow.streams.config import Config, load_config, peer_tls, web_url
from orderflow.streams.kafka import topics

log = logging.getLogger("orderflow")


def _config(ctx: click.Context) -> Config:
    return ctx.obj["config"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file (TOML, settings under [orderflow]). Default: orderflow.toml or $ORDERFLOW_CONFIG.")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """orderflow: a marketplace's order lifecycle on Kafka.

    Reads order and logistics events, keeps every order's state, fires the
    platform's deadlines and publishes status changes, reminders and alerts.
    Without a configured broker (ORDERFLOW_BROKER) it runs an embedded one.
    """
    try:
        ctx.obj = {"config": load_config(config_path)}
    except (OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    logging.basicConfig(level=ctx.obj["config"].log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")


def _address_file(config: Config) -> Path:
    return config.data_dir / "broker.address"


@contextlib.contextmanager
def _cluster(config: Config):
    """(config, embedded broker or None): the configured cluster, or an embedded broker for as long as the block runs."""
    if config.broker:
        yield config, None
        return
    from orderflow.streams.kafka.broker import EmbeddedBroker, broker_binary

    config.data_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(broker_binary(config), config.data_dir / "broker.log") as broker:
        address = _address_file(config)
        address.write_text(broker.bootstrap)
        click.echo(f"embedded broker at {broker.bootstrap} (log: {config.data_dir / 'broker.log'})", err=True)
        try:
            yield dataclasses.replace(config, broker=broker.bootstrap), broker
        finally:
            address.unlink(missing_ok=True)


# Beside the local state: the id of the cluster it was built against.
STATE_OWNER = "cluster.id"
# Where state built against another cluster is moved (the last such state only).
STATE_ASIDE = "previous-state"


def _claim_state(data_dir: Path, appdir: Path, cluster_id: str | None, embedded: bool) -> None:
    """Keep the local state only if it was built against this cluster, and mark it as this cluster's.

    The state records how far it has read each changelog; on a cluster without those
    changelogs (the embedded broker keeps nothing across runs) Faust refuses to start.
    Nothing could restore that state there, so it is moved aside and the worker starts
    empty. State without a mark is kept on a configured cluster: it may well be its own.
    """
    if cluster_id is None:  # the cluster does not say which one it is
        return
    owner_file = data_dir / STATE_OWNER
    owner = owner_file.read_text().strip() if owner_file.exists() else None
    built = appdir.is_dir() and any(appdir.iterdir())
    if built and owner != cluster_id and (embedded or owner is not None):
        aside = data_dir / STATE_ASIDE
        shutil.rmtree(aside, ignore_errors=True)
        appdir.rename(aside)
        why = ("the embedded broker starts empty each run, so it could not be restored" if embedded
               else f"it was built against cluster {owner}, not this one ({cluster_id})")
        click.echo(f"local state of an earlier run moved from {appdir} to {aside}: {why}", err=True)
    owner_file.write_text(cluster_id + "\n")


async def _cluster_id(settings: dict) -> str | None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings)
    await admin.start()
    try:
        return (await admin.describe_cluster()).get("cluster_id")
    finally:
        await admin.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


# Seconds a worker that died gets to close before the command ends anyway; less when its broker
# is gone, as it can then commit nothing.
STOP_GRACE = 10.0
STOP_GRACE_NO_BROKER = 3.0


class _Supervisor:
    """Ends the command promptly, non-zero and with one line, when the worker dies or its embedded broker exits.

    Runs in a thread because the worker's own shutdown after a crash can hang (its
    clients waiting on a broker that is gone), and then nothing in its loop runs.
    """

    def __init__(self, runner, broker, logfile: Path | None):
        self.runner, self.broker = runner, broker
        self.logs = [str(logfile)] if logfile else []
        self.reason: str | None = None
        self.done = False
        self.cleanups: list = []  # called before a forced exit (the terminal, the broker's address file)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="orderflow-supervisor", daemon=True).start()

    def message(self) -> str:
        return f"the worker stopped: {self.reason}" + (f" (log: {', '.join(self.logs)})" if self.logs else "")

    def _watch(self) -> None:
        grace = STOP_GRACE
        while self.reason is None:
            time.sleep(0.2)
            status = self.broker.exit_status() if self.broker is not None else None
            if self.runner.crash_reason is not None:
                self.reason = _one_line(self.runner.crash_reason)
            elif status is not None:
                self.reason = "the embedded broker exited " + (f"(killed by signal {-status})" if status < 0
                                                               else f"(status {status})")
                self.logs.insert(0, str(self.broker.log_path))
                grace = STOP_GRACE_NO_BROKER
                os.kill(os.getpid(), signal.SIGTERM)  # stop the worker as Ctrl-C does
        time.sleep(grace)
        if not self.done:
            for cleanup in self.cleanups:
                cleanup()
            sys.stderr.write(f"Error: {self.message()}\n")
            sys.stderr.flush()
            os._exit(1)


def _log_thread_errors(args: threading.ExceptHookArgs) -> None:
    """A client thread's error goes to the worker's log like any other, not as a bare traceback on stderr."""
    log.error("thread %s stopped: %r", getattr(args.thread, "name", "?"), args.exc_value,
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _client_config(config: Config) -> Config:
    """For clients of a running worker: the configured cluster, else the embedded broker `run` started."""
    if config.broker:
        return config
    address = _address_file(config)
    if not address.exists():
        raise click.UsageError("no broker: set ORDERFLOW_BROKER, or start `orderflow run` first (it runs an embedded broker)")
    return dataclasses.replace(config, broker=address.read_text().strip())


@main.command()
@click.option("--sample", is_flag=True,
              help="Publish a day of sample traffic (played one simulated hour per second unless a clock is set) "
                   "and print every status change, reminder and alert.")
@click.option("--for", "run_for", type=float, default=None, metavar="SECONDS", help="Stop after this many seconds.")
@click.pass_context
def run(ctx: click.Context, sample: bool, run_for: float | None) -> None:
    """Run a worker: create the topics, process events, fire deadlines. Ctrl-C stops it cleanly."""
    from orderflow.streams.worker.clock import AcceleratedClock, wall_ms

    config = _config(ctx)
    if sample and config.clock == "system":
        config = dataclasses.replace(config, clock=AcceleratedClock(3600, wall_ms()).spec())

    def prepare(worker, config: Config) -> None:
        if sample:
            async def play() -> None:
                await _owns_partitions(worker.app)
                await _play(config, sample_events(worker.clock.now()), worker.clock, quiet=True)
            worker.app.task(play)

    from orderflow.streams.cli.sample import sample_events
    # With --sample the outputs are the show: Faust's own chatter only from warnings up.
    _run_worker(config, prepare, run_for, loglevel="warning" if sample else config.log_level, echo=sample)


def _run_worker(config: Config, prepare, run_for: float | None, loglevel: str, echo: bool = False,
                logfile: Path | None = None, cleanups: tuple = ()) -> None:
    """Start the broker if none is configured, create the topics, run one worker until stopped.

    Exits non-zero with a one-line reason if the worker dies (see _Supervisor).
    """
    import faust

    from orderflow.streams.kafka.admin import client_settings, ensure_topics
    from orderflow.streams.worker.app import create_app
    from orderflow.streams.worker.clock import clock_from_spec
    from orderflow.streams.lifecycle import Policy

    try:
        policy = Policy.load(config.region_policy or None)
        clock = clock_from_spec(config.clock)
    except (OSError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if config.tansu:
        config = dataclasses.replace(config, broker_kind="tansu")  # _cluster fills in the broker address
    with _cluster(config) as (config, broker):
        settings = client_settings(config)
        _kafka(ensure_topics(settings, topics.ALL_TOPICS, config.partitions, config.replication))
        try:
            worker = create_app(config, policy, clock, echo=echo)
        except ValueError as exc:  # unsafe or inconsistent settings, e.g. an open bind without a token
            raise click.UsageError(str(exc)) from None
        cluster_id = broker.cluster_id if broker is not None else _kafka(_cluster_id(settings))
        config.data_dir.mkdir(parents=True, exist_ok=True)
        _claim_state(config.data_dir, Path(worker.app.conf.appdir), cluster_id, embedded=broker is not None)
        prepare(worker, config)
        if run_for:
            worker.app.task(lambda: _stop_after(run_for))
        runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                              logfile=str(logfile) if logfile else None)
        # Faust's terminal spinner turns every logger up to DEBUG to spin on each record,
        # which costs a third of the worker's time.
        runner.spinner = None
        supervisor = _Supervisor(runner, broker, logfile)
        threading.excepthook = _log_thread_errors
        supervisor.cleanups += [*cleanups, lambda: _address_file(config).unlink(missing_ok=True)]
        supervisor.start()
        try:
            runner.execute_from_commandline()
        except SystemExit as stopped:
            if stopped.code and supervisor.reason is None:
                # A failure at start ends here without a crash reason; the exception is the context.
                cause = stopped.__context__
                supervisor.reason = _one_line(cause) if cause is not None else f"exit status {stopped.code}"
        finally:
            supervisor.done = True
        if supervisor.reason is not None:
            for cleanup in cleanups:
                cleanup()
            raise click.ClickException(supervisor.message())


async def _owns_partitions(app) -> None:
    """Wait until the worker has joined its group and owns partitions."""
    while not app.consumer.assignment() or app.rebalancing:
        await asyncio.sleep(0.2)


@main.command()
@click.option("--speed", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              help="Simulated seconds per wall second (3600: the 48 h rules fire in under a minute).")
@click.option("--orders", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--orders-per-hour", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Arrival rate, per simulated hour.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--for", "run_for", type=float, default=None, metavar="SECONDS", help="Stop after this many seconds.")
@click.pass_context
def demo(ctx: click.Context, speed: float, orders: int, orders_per_hour: float, seed: int, run_for: float | None) -> None:
    """Watch orders move: embedded broker, a worker and simulated traffic, with a live view.

    Counts per seller tab, GMV, and the latest reminders, alerts and
    cancellations as they fire. Ctrl-C stops everything it started.
    """
    from orderflow.streams.cli.board import Board
    from orderflow.streams.worker.clock import AcceleratedClock, wall_ms
    from orderflow.streams.cli.simulator import Simulator

    config = dataclasses.replace(_config(ctx), broker="", broker_kind="tansu",
                                 clock=AcceleratedClock(speed, wall_ms()).spec())
    board = Board()
    traffic = Simulator(seed=seed, orders_per_hour=orders_per_hour, inventory=True)

    def prepare(worker, config: Config) -> None:
        worker.book.observers.append(board.observe)

        async def play() -> None:
            await _owns_partitions(worker.app)
            traffic.start = worker.clock.now()
            await _play(config, traffic.events(orders), worker.clock, quiet=True)

        async def draw() -> None:
            try:
                while True:
                    board.show(worker.clock.now(), worker.book.tally)
                    await asyncio.sleep(1.0)
            finally:
                board.close()

        worker.app.task(play)
        worker.app.task(draw)

    click.echo(f"The order centre, in a browser: {_api_url(config)}/centre/")
    # The board owns the terminal: the worker's log goes to a file.
    _run_worker(config, prepare, run_for, loglevel="warning", logfile=config.data_dir / "demo.log",
                cleanups=(board.close,))
    board.close()


async def _stop_after(seconds: float) -> None:
    await asyncio.sleep(seconds)
    os.kill(os.getpid(), signal.SIGTERM)  # the same clean stop as Ctrl-C


@main.command()
@click.argument("file", type=click.File("r", errors="replace"))
@click.pass_context
def produce(ctx: click.Context, file) -> None:
    """Publish upstream events from FILE (JSON lines, the form of DOMAIN.md; - for stdin).

    Every line is checked against the event contract and the Avro schema
    first; invalid lines are reported with their line number and not sent.
    """
    from orderflow.streams.cli.board import Meter
    from orderflow.streams.kafka.publish import publish_lines

    config = _client_config(_config(ctx))
    total = _size(file)
    started = time.monotonic()
    with Meter("publishing", total) as meter:
        def progress(sent: int, read: int) -> None:
            rate = sent / max(time.monotonic() - started, 1e-9)
            meter.update(read if total else sent, f"{sent:,} events ({rate:,.0f}/s)")

        sent, invalid = _kafka(publish_lines(config, file, progress=progress, report=meter.note))
    click.echo(f"published {sent} events; {invalid} invalid lines skipped", err=True)
    if invalid:
        sys.exit(1)


def _size(file) -> int | None:
    """Bytes in `file` if it is a regular file (not a pipe or a terminal)."""
    try:
        status = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor, e.g. a test's stream
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


@main.command()
@click.argument("topic")
@click.option("--from-beginning/--new-only", default=True, help="Start at the oldest message (default) or only new ones.")
@click.option("--max", "max_messages", type=int, default=None, help="Stop after this many messages.")
@click.option("--idle-timeout", type=float, default=None, metavar="SECONDS",
              help="Stop when no message arrived for this long (default: follow forever).")
@click.pass_context
def tail(ctx: click.Context, topic: str, from_beginning: bool, max_messages: int | None,
         idle_timeout: float | None) -> None:
    """Print the messages of TOPIC decoded as JSON lines (topics: see `orderflow topics`)."""
    from orderflow.streams.kafka.publish import tail_topic

    try:
        spec = topics.by_name(topic)
    except KeyError as exc:
        raise click.UsageError(exc.args[0]) from None
    config = _client_config(_config(ctx))
    _kafka(tail_topic(config, spec, from_beginning, max_messages, idle_timeout, click.echo))


def _kafka(coro):
    """Run a Kafka client; a broker that cannot be reached is a clear error, not a traceback."""
    from aiokafka.errors import KafkaConnectionError, KafkaError

    try:
        return asyncio.run(coro)
    except KafkaConnectionError as exc:
        raise click.ClickException(f"cannot reach the Kafka broker: {exc}") from None
    except KafkaError as exc:
        raise click.ClickException(f"Kafka error: {exc}") from None


@main.command(name="topics")
@click.option("--create", is_flag=True,
              help="Create the missing ones on the configured broker with the configured partitions and "
                   "replication, and check that those there have that partition count.")
@click.pass_context
def list_topics(ctx: click.Context, create: bool) -> None:
    """List the topics orderflow reads and writes, with their schemas (or create them)."""
    if not create:
        for spec in topics.ALL_TOPICS:
            click.echo(f"{spec.name:24} {spec.schema:16} {spec.doc}")
        return
    config = _config(ctx)
    if not config.broker:
        raise click.UsageError("--create needs a broker: set ORDERFLOW_BROKER (`orderflow run` creates the "
                               "embedded broker's topics itself)")
    from orderflow.streams.kafka.admin import TopicError, client_settings, ensure_topics

    try:
        created = _kafka(ensure_topics(client_settings(config), topics.ALL_TOPICS, config.partitions,
                                       config.replication))
    except (TopicError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(created)} topics created, {len(topics.ALL_TOPICS) - len(created)} already there; "
               f"all with {config.partitions} partitions")


@main.command()
@click.argument("events", type=click.File("r", errors="replace"))
@click.option("--until", required=True, metavar="TIME", help="Run the clock to this time: UTC milliseconds or ISO 8601.")
@click.option("--out", type=click.File("w"), default="-", show_default=True, help="Where to write the outputs (JSON lines).")
@click.option("--region-policy", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Region policy file (TOML); default: the configured one, else the packaged defaults.")
@click.pass_context
def replay(ctx: click.Context, events, until: str, out, region_policy: str | None) -> None:
    """Replay recorded EVENTS (JSON lines, in arrival order) with a simulated clock.

    Applies the same rules as the live worker, fires every deadline up to
    --until, and writes every output in the order it takes effect.
    """
    from orderflow.streams.stock.room import StockRoom
    from orderflow.streams.lifecycle import Policy
    from orderflow.streams.book.order_book import OrderBook
    from orderflow.streams.book.replay import parse_time, read_lines, replay as run_replay

    try:
        until_ms = parse_time(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    policy_file = region_policy or _config(ctx).region_policy or None
    try:
        policy = Policy.load(policy_file)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{policy_file}: {exc}", param_hint="--region-policy") from None
    book, room = OrderBook({}, policy), StockRoom({})
    for output in run_replay(read_lines(events), until_ms, policy, book, room):
        out.write(json.dumps(output, ensure_ascii=False) + "\n")
    tally, stock = book.tally, room.tally
    click.echo(f"events in={tally['in']} applied={tally['applied']} dead_lettered={tally['dead_lettered']} "
               f"duplicates={tally['duplicates']} held={tally['buffered']} after_until={tally['after_until']}; "
               f"orders={len(book.orders)}; warehouse events in={stock['in']} applied={stock['applied']} "
               f"dead_lettered={stock['dead_lettered']} duplicates={stock['duplicates']}; "
               f"lines reserved={stock['reserved']} short={stock['short']}", err=True)


@main.command()
@click.option("--orders", type=click.IntRange(min=1), default=1000, show_default=True, help="How many orders.")
@click.option("--orders-per-hour", type=click.FloatRange(min=0.001), default=600.0, show_default=True,
              help="Arrival rate of new orders, per simulated hour.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed gives the same traffic.")
@click.option("--start", default=None, metavar="TIME", help="Simulated time of the first order; default: now.")
@click.option("--out", type=click.File("w"), default=None, help="Write JSON lines here (- for stdout) instead of publishing.")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Simulated seconds per wall second when publishing (3600: an hour a second). "
                   "Workers must run with the same clock: ORDERFLOW_CLOCK is printed.")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, help="At most this many events per second when publishing (0: no limit).")
@click.option("--inventory/--no-inventory", default=True, show_default=True,
              help="Also play the warehouse: stock counts, restocks, stock-outs and catalogue prices (inventory-events).")
@click.pass_context
def simulate(ctx: click.Context, orders: int, orders_per_hour: float, seed: int, start: str | None, out,
             speed: float, rate: float, inventory: bool) -> None:
    """Generate upstream traffic: a realistic mix of orders and parcels across regions.

    Writes JSON lines (for `replay`) with --out, or publishes (order-events and
    inventory-events) as the simulated clock reaches each event's time.
    """
    from orderflow.streams.worker.clock import AcceleratedClock, wall_ms
    from orderflow.streams.book.replay import parse_time
    from orderflow.streams.cli.simulator import Simulator

    try:
        first = parse_time(start) if start else wall_ms()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    events = Simulator(seed=seed, start=first, orders_per_hour=orders_per_hour, inventory=inventory).events(orders)
    if out is not None:
        for event in events:
            out.write(json.dumps(event) + "\n")
        return
    config = _client_config(_config(ctx))
    clock = AcceleratedClock(speed, first)
    if speed != 1:
        click.echo(f"run workers with ORDERFLOW_CLOCK={clock.spec()}", err=True)
    sent = _kafka(_play(config, events, clock, rate))
    click.echo(f"published {sent} events", err=True)


async def _play(config: Config, events, clock, rate: float = 0.0, quiet: bool = False) -> int:
    """Publish events as the clock reaches their time, at most `rate` a second."""
    from orderflow.streams.cli.board import Meter
    from orderflow.streams.kafka.publish import Publisher

    sent, started = 0, time.monotonic()
    with contextlib.nullcontext() if quiet else Meter("publishing") as meter:
        async with Publisher(config) as publisher:
            for event in events:
                while (wait := (event["event_time"] - clock.now()) / 1000 / getattr(clock, "factor", 1)) > 0:
                    await asyncio.sleep(min(wait, 0.5))
                if rate and sent >= rate * (time.monotonic() - started):
                    await asyncio.sleep(1 / rate)
                await publisher.send_event(event)
                sent += 1
                if meter is not None and sent % 100 == 0:
                    meter.update(sent, f"{sent:,} events ({sent / max(time.monotonic() - started, 1e-9):,.0f}/s)")
            await publisher.flush()
    return sent


def _api_url(config: Config) -> str:
    """This host's worker, from the configured bind address and port."""
    return web_url(config, "127.0.0.1" if config.web_bind in ("", "0.0.0.0", "::") else config.web_bind)


def _api_get(api: str, path: str, query: dict, config: Config) -> dict:
    """GET a JSON answer of the order API (with the token, and over HTTPS checked against peer_ca); its
    errors become one-line messages."""
    import urllib.error
    import urllib.parse
    import urllib.request

    token = config.api_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{api.rstrip('/')}{path}?{urllib.parse.urlencode(query)}", headers=headers)
    try:
        tls = peer_tls(config) if api.startswith("https:") else None

        class NoRedirects(urllib.request.HTTPRedirectHandler):  # the API never redirects: the token stays
            def redirect_request(self, *_args, **_kwargs):
                return None
        opener = urllib.request.build_opener(NoRedirects(), urllib.request.HTTPSHandler(context=tls))
        with opener.open(request, timeout=300) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            why = json.load(exc).get("error")
        except ValueError:
            why = exc.reason
        raise click.ClickException(f"the order API at {api} answered {exc.code}: {why}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the order API at {api} (is a worker running? see --api): "
                                   f"{getattr(exc, 'reason', exc)}") from None


def _api_pages(api: str, params: dict, config: Config):
    """The pages of orders the API lists for `params`, in order-id order (a seek per page on the workers)."""
    from orderflow.streams.api.order_query import MAX_LIMIT

    query = {**params, "sort": "order_id", "limit": MAX_LIMIT, "detail": 1}
    while True:
        page = _api_get(api, "/orders", query, config)
        yield page["orders"]
        if not page["next_cursor"]:
            return
        query["cursor"] = page["next_cursor"]


@main.command()
@click.option("--status", default=None, help="Only this status (or several, comma-separated), e.g. AWAITING_SHIPMENT.")
@click.option("--tab", default=None, help="Only this seller tab: Unpaid, 'To ship', Shipped, Completed, Cancelled.")
@click.option("--from", "created_from", default=None, metavar="TIME",
              help="Created at or after TIME (UTC ms or ISO 8601).")
@click.option("--to", "created_to", default=None, metavar="TIME", help="Created before TIME (UTC ms or ISO 8601).")
@click.option("--region", default=None, help="Only this region, e.g. GB.")
@click.option("--shop", default=None, help="Only this shop id.")
@click.option("--due", type=click.Choice(["ship_within_24h", "auto_cancel_within_24h", "overdue"]), default=None,
              help="Only this urgency view, by the workers' clock when the export begins.")
@click.option("--action-needed", is_flag=True, help="Only orders with a condition that waits for the seller.")
@click.option("--format", "file_format", type=click.Choice(["csv", "xlsx"]), default=None,
              help="Default: xlsx for an --out ending in .xlsx, else csv.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The file to write.")
@click.option("--include-personal-data", is_flag=True,
              help="Recipient name, phone and address in clear (masked by default).")
@click.option("--api", default=None, metavar="URL",
              help="A worker's order API (any worker answers for all). Default: this host's, from web_bind and "
                   "web_port.")
@click.pass_context
def export(ctx: click.Context, status: str | None, tab: str | None, created_from: str | None, created_to: str | None,
           region: str | None, shop: str | None, due: str | None, action_needed: bool, file_format: str | None,
           out: Path, include_personal_data: bool, api: str | None) -> None:
    """Export orders as CSV or Excel: one row per line item, with a seller centre's columns.

    Reads the orders page by page from the workers' order API and writes each
    page as it arrives, so memory stays flat whatever the size. Times are in
    each order's region time zone. The file appears only once it is complete.
    """
    from orderflow.streams.cli.board import Meter
    from orderflow.streams.api.export import open_writer, time_zones, write_orders
    from orderflow.streams.lifecycle import Policy
    from orderflow.streams.book.replay import parse_time

    config = _config(ctx)
    params = {"status": status, "tab": tab, "region": region, "shop_id": shop, "due": due,
              "action_needed": 1 if action_needed else None, "include_personal_data": int(include_personal_data)}
    for name, value, hint in (("created_from", created_from, "--from"), ("created_to", created_to, "--to")):
        try:
            params[name] = parse_time(value) if value else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
    zone_of = time_zones(Policy.load(config.region_policy or None))
    file_format = file_format or ("xlsx" if out.suffix.lower() == ".xlsx" else "csv")
    api, chosen = api or _api_url(config), {k: v for k, v in params.items() if v is not None}
    # The bar's length: orders matching the filters now (orders arriving meanwhile may add a few).
    counted = _api_get(api, "/orders/counts", {k: v for k, v in chosen.items() if k != "include_personal_data"},
                       config)
    total = counted["total"]
    chosen["now"] = counted["now"]  # every page judged at the instant the count was
    partial = out.with_name(out.name + ".partial")
    orders = rows = 0
    try:
        with contextlib.closing(open_writer(file_format, partial)) as writer, Meter("exporting", total) as meter:
            for page in _api_pages(api, chosen, config):
                page_orders, page_rows = write_orders(page, writer, zone_of, include_personal_data)
                orders, rows = orders + page_orders, rows + page_rows
                meter.update(orders, f"{orders:,} orders, {rows:,} rows")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"exported {orders} orders ({rows} rows) to {out}; it covers {counted['covers']}", err=True)


@main.command()
@click.option("--granularity", type=click.Choice(("MINUTE", "HOUR", "DAY"), case_sensitive=False), default="DAY",
              show_default=True, help="Window length of the figures.")
@click.option("--region", default=None, help="Only this region (e.g. GB).")
@click.option("--shop", default=None, help="Only this shop.")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw orders and GMV over time into this file: .html (an SVG chart) or .png.")
@click.option("--from-replay", "events", type=click.File("r", errors="replace"), default=None, metavar="EVENTS",
              help="Compute the figures from recorded events (JSON lines) instead of reading order-analytics.")
@click.option("--until", default=None, metavar="TIME",
              help="With --from-replay: run the clock to this time (UTC milliseconds or ISO 8601).")
@click.option("--region-policy", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Region policy file (TOML) for local days and a replay's rules; default: the configured one.")
@click.pass_context
def stats(ctx: click.Context, granularity: str, region: str | None, shop: str | None, chart_path: Path | None,
          events, until: str | None, region_policy: str | None) -> None:
    """Show the analytics figures: orders, GMV, conversion, cancellations, dispatch, delivery, ratings.

    Prints each region's latest window (a local day unless --granularity says
    otherwise) with a row per shop: the latest revision of every metric on
    order-analytics, or of a replay of recorded events with --from-replay.
    """
    from orderflow.streams.analytics.facts import Latest, replay_records, zones
    from orderflow.streams.lifecycle import Policy
    from orderflow.streams.book.replay import parse_time, read_lines
    from orderflow.streams.cli.stats import CHART_SUFFIXES, read_latest, table, write_chart

    if chart_path is not None and chart_path.suffix.lower() not in CHART_SUFFIXES:
        raise click.BadParameter(f"{chart_path}: give a .html or .png file", param_hint="--chart")
    if (events is None) != (until is None):
        raise click.UsageError("--from-replay and --until go together")
    policy_file = region_policy or _config(ctx).region_policy or None
    try:
        policy = Policy.load(policy_file)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{policy_file}: {exc}", param_hint="--region-policy") from None
    if events is None:
        try:
            latest, undecodable = _kafka(read_latest(_client_config(_config(ctx))))
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
        if undecodable:
            click.echo(f"{undecodable} undecodable records on {topics.ANALYTICS.name} skipped", err=True)
    else:
        try:
            until_ms = parse_time(until)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from None
        latest = Latest()
        for record in replay_records(read_lines(events), until_ms, policy):
            latest.add(record)
    granularity, zone_of = granularity.upper(), zones(policy)
    click.echo(table(latest, granularity, zone_of, region, shop))
    if chart_path is not None:
        windows = write_chart(chart_path, latest, granularity, zone_of, region, shop)
        click.echo(f"chart of {windows} {granularity} windows written to {chart_path}", err=True)


@main.command()
@click.option("--start", default=None, help="Time of the first event (UTC ms or ISO 8601); default: now.")
def sample(start: str | None) -> None:
    """Write the sample traffic as JSON lines (to replay it, or to publish it with `produce`)."""
    from orderflow.streams.worker.clock import wall_ms
    from orderflow.streams.book.replay import parse_time
    from orderflow.streams.cli.sample import sample_events

    try:
        first = parse_time(start) if start else wall_ms()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    for event in sample_events(first):
        click.echo(json.dumps(event))
