"""The orderflow command line."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from . import topics
from .config import Config, load_config

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
    """The configured cluster, or an embedded broker for as long as the block runs."""
    if config.broker:
        yield config
        return
    from .broker import EmbeddedBroker, broker_binary

    config.data_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(broker_binary(config), config.data_dir / "broker.log") as broker:
        address = _address_file(config)
        address.write_text(broker.bootstrap)
        click.echo(f"embedded broker at {broker.bootstrap} (log: {config.data_dir / 'broker.log'})", err=True)
        try:
            yield dataclasses.replace(config, broker=broker.bootstrap)
        finally:
            address.unlink(missing_ok=True)


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
    import faust

    from .admin import client_settings, ensure_topics
    from .app import create_app
    from .clock import AcceleratedClock, clock_from_spec, wall_ms
    from .lifecycle import Policy

    config = _config(ctx)
    if sample and config.clock == "system":
        config = dataclasses.replace(config, clock=AcceleratedClock(3600, wall_ms()).spec())
    policy = Policy.load(config.region_policy or None)
    clock = clock_from_spec(config.clock)
    if config.tansu:
        config = dataclasses.replace(config, broker_kind="tansu")  # _cluster fills in the broker address
    with _cluster(config) as config:
        asyncio.run(ensure_topics(client_settings(config), topics.ALL_TOPICS, config.partitions, config.replication))
        worker = create_app(config, policy, clock, echo=sample)
        if sample:
            worker.app.task(lambda: _play_sample(worker.app, config, clock))
        if run_for:
            worker.app.task(lambda: _stop_after(run_for))
        # With --sample the outputs are the show: Faust's own chatter only from warnings up.
        loglevel = "warning" if sample else config.log_level
        faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


async def _stop_after(seconds: float) -> None:
    await asyncio.sleep(seconds)
    os.kill(os.getpid(), signal.SIGTERM)  # the same clean stop as Ctrl-C


async def _play_sample(app, config: Config, clock) -> None:
    """Publish the sample as it happens on the clock, once the worker owns its partitions."""
    from .publish import Publisher
    from .sample import sample_events

    while not app.consumer.assignment() or app.rebalancing:
        await asyncio.sleep(0.2)
    events = sample_events(clock.now())
    async with Publisher(config) as publisher:
        for event in events:
            while (wait := (event["event_time"] - clock.now()) / 1000) > 0:
                await asyncio.sleep(min(wait, 0.5))
            await publisher.send_event(event)


@main.command()
@click.argument("file", type=click.File("r", errors="replace"))
@click.pass_context
def produce(ctx: click.Context, file) -> None:
    """Publish upstream events from FILE (JSON lines, the form of DOMAIN.md; - for stdin).

    Every line is checked against the event contract and the Avro schema
    first; invalid lines are reported with their line number and not sent.
    """
    from .publish import publish_lines

    config = _client_config(_config(ctx))
    sent, invalid = _kafka(publish_lines(config, file, progress=_progress, report=lambda line: click.echo(line, err=True)))
    click.echo(f"\npublished {sent} events; {invalid} invalid lines skipped", err=True)
    if invalid:
        sys.exit(1)


def _progress(done: int, started: float) -> None:
    click.echo(f"\r{done} events published ({done / max(time.monotonic() - started, 1e-9):,.0f}/s)", err=True, nl=False)


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
    from .publish import tail_topic

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
def list_topics() -> None:
    """List the topics orderflow reads and writes, with their schemas."""
    for spec in topics.ALL_TOPICS:
        click.echo(f"{spec.name:24} {spec.schema:16} {spec.doc}")


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
    from .lifecycle import Policy
    from .order_book import OrderBook
    from .replay import parse_time, read_lines, replay as run_replay

    try:
        until_ms = parse_time(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from None
    policy_file = region_policy or _config(ctx).region_policy or None
    try:
        policy = Policy.load(policy_file)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{policy_file}: {exc}", param_hint="--region-policy") from None
    book = OrderBook({}, policy)
    for output in run_replay(read_lines(events), until_ms, policy, book):
        out.write(json.dumps(output, ensure_ascii=False) + "\n")
    tally = book.tally
    click.echo(f"events in={tally['in']} applied={tally['applied']} dead_lettered={tally['dead_lettered']} "
               f"duplicates={tally['duplicates']} held={tally['buffered']} after_until={tally['after_until']}; "
               f"orders={len(book.orders)}", err=True)


@main.command()
@click.option("--start", default=None, help="Time of the first event (UTC ms or ISO 8601); default: now.")
def sample(start: str | None) -> None:
    """Write the sample traffic as JSON lines (to replay it, or to publish it with `produce`)."""
    from .clock import wall_ms
    from .replay import parse_time
    from .sample import sample_events

    try:
        first = parse_time(start) if start else wall_ms()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    for event in sample_events(first):
        click.echo(json.dumps(event))
