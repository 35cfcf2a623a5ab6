"""The worker's batch protocol under faults (streams/worker/protocol.py), on the embedded broker.

Each test breaks a worker on purpose while it works through a backlog, lets a
worker finish the job, and compares everything published and kept with a
replay of the same input (tests/support/reliability.py): every output the replay
gives is there, copies of an output carry its id and are identical, nothing
else is published, and RocksDB and the changelog hold the replay's orders.
The workers' clock stands still after the last event, so the replay until
that moment is the exact expectation.

Faults: `kill -9` at each step of the protocol (the worker's test-only
crash_after setting), a delivery the broker refuses (fail_delivery), messages
that make a step raise in the middle of a batch, the dead letters of orders
that never appear across a `kill -9`, and partitions moving to a new worker
while their due deadlines wait behind a backlog that holds the payments.
"""
from __future__ import annotations

import asyncio
import signal
import time

import pytest
from aiokafka import AIOKafkaProducer

from support.live import WorkerProcess, run
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.worker.clock import wall_ms
from orderflow.streams.worker.protocol import STEPS
from orderflow.streams.worker.shell import STOPPED_EXIT_STATUS
from support.orders import HOUR, MIN, created, paid
from support.reliability import (OutputLog, assert_orders_match, changelog_state, committed_offsets, compare_outputs,
                                 expected_from_replay, final_tally, frozen_clock, latest_state, publish_events,
                                 reconciles, report, rocksdb_copies, simulated_traffic, sized, wait_caught_up)

ORDERS = sized(300, 5_000)
ORPHANS = 12  # orders whose creation never comes: their held events are dead-lettered after the grace period


def traffic(origin: int) -> list[dict]:
    """Simulated orders, plus events of orders that never appear, in event-time order."""
    events = simulated_traffic(ORDERS, origin)
    first, last = events[0]["event_time"], events[-1]["event_time"]
    orphans = [paid(f"orphan-{n}", first + (last - first) * n // ORPHANS) for n in range(ORPHANS)]
    return sorted(events + orphans, key=lambda e: e["event_time"])


def run_to_completion(bootstrap: str, tmp_path, events: list[dict], origin: int, faulty: dict,
                      garbage: list[tuple[str, bytes]] = ()) -> dict:
    """A worker with the `faulty` settings works on the backlog until it ends by itself (or, if it does
    not, until it has caught up); a worker without them on the same data dir finishes the job.
    Returns what both did and what was published."""
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    published = run(publish_events(bootstrap, events))
    run(_publish_raw(bootstrap, garbage))
    data_dir = tmp_path / "worker"
    timeout = 120 + len(events) / 50
    clock = frozen_clock(origin)

    async def scenario() -> dict:
        figures: dict = {}
        async with OutputLog(bootstrap) as log:
            first = WorkerProcess(bootstrap, data_dir, clock=clock, **faulty)
            try:
                await asyncio.to_thread(first.wait_ready, 120)
                # Caught up, or ended by its fault: whichever comes first.
                ended = asyncio.create_task(asyncio.to_thread(first.process.wait, timeout))
                caught_up = asyncio.create_task(wait_caught_up(bootstrap, log, published, timeout))
                await asyncio.wait({ended, caught_up}, return_when=asyncio.FIRST_COMPLETED)
                caught_up.cancel()
                figures["first_rc"] = first.process.poll()
                figures["events_committed_when_first_ended"] = sum(
                    (await committed_offsets(bootstrap, published.ends)).values())
                figures["outputs_seen_when_first_ended"] = len(log.ids)
            finally:
                first.stop()
                await asyncio.gather(ended, return_exceptions=True)
            recovered_before = first.log().count("orders recovered")
            second = WorkerProcess(bootstrap, data_dir, clock=clock)
            try:
                await asyncio.to_thread(second.wait_ready, 120, recovered_before + 1)
                figures.update(await wait_caught_up(bootstrap, log, published, timeout))
            finally:
                figures["second_rc"] = second.stop()
            figures["first_log"], figures["log"], figures["pairs"] = first.log(), second.log(), log.pairs()
        return figures

    figures = run(scenario())
    figures["published_total"] = published.total
    figures["changelog"] = run(changelog_state(bootstrap))[0]
    figures["stored"] = latest_state(rocksdb_copies([data_dir]))[0]
    return figures


async def _publish_raw(bootstrap: str, messages: list[tuple[str, bytes]]) -> None:
    if not messages:
        return
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, (topic, value) in enumerate(messages):
            await producer.send_and_wait(topic, value, partition=partition % 4)
    finally:
        await producer.stop()


def assert_matches_replay(figures: dict, expected, record_property, name: str, extra=None) -> None:
    pairs = figures.pop("pairs")
    if extra is not None:
        pairs = [pair for pair in pairs if not extra(*pair)]
    comparison = compare_outputs(pairs, expected)
    tally = final_tally(figures["log"])
    stored, changelog = figures.pop("stored"), figures.pop("changelog")
    line = report(record_property, name, {
        "events": figures["published_total"], "expected_outputs": len(expected.outputs),
        **{k: v for k, v in figures.items() if not k.endswith("log")}, **comparison.figures(),
        "restarted_in": tally["in"]})
    assert figures["second_rc"] == 0, line
    assert reconciles(tally), f"{tally} {line}"
    assert comparison.ok, f"{comparison}\n{line}"
    assert_orders_match(stored, expected, line)
    assert_orders_match(changelog, expected, "changelog: " + line)


@pytest.mark.parametrize("step", STEPS)
def test_kill9_at_each_step_of_the_protocol_loses_nothing(own_broker, tmp_path, record_property, step):
    """The worker kills itself (SIGKILL) when its third batch with outputs reaches `step`; a restart
    on the same data dir ends with the replay's outputs and orders, orphans' dead letters included."""
    origin = wall_ms()
    events = traffic(origin)
    expected = expected_from_replay(events, origin)
    figures = run_to_completion(own_broker.bootstrap, tmp_path, events, origin, {"crash_after": f"{step}:3"})
    assert figures["first_rc"] == -signal.SIGKILL, figures["first_log"][-3000:]
    assert figures["events_committed_when_first_ended"] < figures["published_total"], figures
    assert_matches_replay(figures, expected, record_property, f"kill9_{step}")


@pytest.mark.parametrize("step", STEPS[1:])
def test_orphans_dead_letters_survive_a_kill9_after_their_delivery(own_broker, tmp_path, record_property, step):
    """Only events of orders that never appear: the first batch with outputs is the one that gives up on
    them (dead letters, orders deleted). Killed at each step after its dead letters are delivered, before
    the events' offsets are committed: the restart reads the events again and gives up on them with the
    same ids (before the deletion is durable), or knows them as done (after it); nothing else."""
    origin = wall_ms()
    events = [paid(f"orphan-{n}", origin - 3 * HOUR + n * MIN) for n in range(40)]
    expected = expected_from_replay(events, origin)
    assert len(expected.outputs) == 40 and not expected.orders
    # Nothing committed before the kill: every event is read again.
    figures = run_to_completion(own_broker.bootstrap, tmp_path, events, origin,
                                {"crash_after": f"{step}:1", "commit_interval": "3600"})
    assert figures["first_rc"] == -signal.SIGKILL, figures["first_log"][-3000:]
    assert figures["events_committed_when_first_ended"] == 0, figures
    assert_matches_replay(figures, expected, record_property, f"kill9_orphans_{step}")


def test_a_refused_delivery_stores_and_acknowledges_nothing_of_its_batch(own_broker, tmp_path, record_property):
    """The broker refuses one status change: the worker says so and stops at once with nothing of that
    batch stored or acknowledged; its restart publishes what the replay does."""
    origin = wall_ms()
    events = traffic(origin)
    expected = expected_from_replay(events, origin)
    figures = run_to_completion(own_broker.bootstrap, tmp_path, events, origin,
                                {"fail_delivery": f"{topics.STATUS_CHANGES.name}:200"})
    assert figures["first_rc"] == STOPPED_EXIT_STATUS, figures["first_log"][-3000:]
    assert "stopping the worker: order-events/" in figures["first_log"]
    assert "refused on purpose" in figures["first_log"]
    assert_matches_replay(figures, expected, record_property, "refused_delivery")


def test_a_message_that_makes_its_step_raise_is_dead_lettered_and_the_rest_of_its_batch_goes_on(
        own_broker, tmp_path, record_property):
    """Undecodable stock replies sit among the order events (the order agent reads both topics in the
    same batches): each is dead-lettered with its reason, and every other message of the batch is
    applied as the replay applies it."""
    origin = wall_ms()
    events = traffic(origin)
    expected = expected_from_replay(events, origin)
    garbage = [(topics.STOCK_REPLIES.name, b"\xc3\x01 not a stock reply %d" % n) for n in range(8)]

    def injected(topic: str, record: dict) -> bool:
        return topic == topics.DEAD_LETTERS.name and record["source_topic"] == topics.STOCK_REPLIES.name

    figures = run_to_completion(own_broker.bootstrap, tmp_path, events, origin, {}, garbage)
    dead = [record for topic, record in figures["pairs"] if injected(topic, record)]
    assert len({d["output_id"] for d in dead}) == len(garbage), dead
    assert all(d["reason"].startswith("could not be processed: SchemaError: ") for d in dead), dead
    assert_matches_replay(figures, expected, record_property, "step_raises", extra=injected)


MOVE_ORDERS = sized(2_000, 20_000)


def test_a_partition_that_moves_fires_no_deadline_ahead_of_the_payments_in_its_backlog(own_broker, tmp_path,
                                                                                     record_property):
    """Every order is created 49 h before the (frozen) clock and paid 47 h after its creation; the
    backlog holds all creations, then all payments. A second worker joins while the first is between
    the two: the partitions that move carry orders whose 48 h auto-cancel is due by the clock while
    their payment, in time, is still in the backlog. Nothing may be cancelled."""
    bootstrap = own_broker.bootstrap
    origin = wall_ms()
    start = origin - 49 * HOUR
    creations = [created(f"move-{n}", start + n * 10) for n in range(MOVE_ORDERS)]
    payments = [paid(f"move-{n}", start + 47 * HOUR + n * 10) for n in range(MOVE_ORDERS)]
    events = creations + payments
    expected = expected_from_replay(events, origin)
    assert not any(view.get("reason") == "UNPAID_TIMEOUT" for _, view in expected.outputs.values())
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    published = run(publish_events(bootstrap, events))
    timeout = 120 + len(events) / 50
    clock = frozen_clock(origin)

    async def scenario() -> dict:
        figures: dict = {}
        async with OutputLog(bootstrap) as log:
            first = WorkerProcess(bootstrap, tmp_path / "w1", clock=clock)
            second = None
            try:
                await asyncio.to_thread(first.wait_ready, 120)
                assert await log.wait(lambda out: len(out.ids) >= MOVE_ORDERS // 4, timeout), len(log.ids)
                figures["outputs_seen_at_join"] = len(log.ids)
                second = WorkerProcess(bootstrap, tmp_path / "w2", clock=clock)
                await asyncio.to_thread(second.wait_ready, 120)
                figures.update(await wait_caught_up(bootstrap, log, published, timeout))
            finally:
                figures["first_rc"] = first.stop()
                figures["second_rc"] = second.stop() if second else None
            figures["pairs"] = log.pairs()
            figures["log"] = second.log()
        return figures

    started = time.monotonic()
    figures = run(scenario())
    stored = latest_state(rocksdb_copies([tmp_path / "w1", tmp_path / "w2"]))[0]
    pairs = figures.pop("pairs")
    comparison = compare_outputs(pairs, expected)
    cancelled = [r["order_id"] for t, r in pairs if t == topics.STATUS_CHANGES.name and r["to_status"] == "CANCELLED"]
    line = report(record_property, "move_with_backlog", {
        "orders": MOVE_ORDERS, **{k: v for k, v in figures.items() if k != "log"}, **comparison.figures(),
        "cancelled": len(cancelled), "seconds": round(time.monotonic() - started, 1)})
    assert figures["outputs_seen_at_join"] < len(expected.outputs), line
    assert not cancelled, f"cancelled although paid in time: {cancelled[:5]}\n{line}"
    assert comparison.ok, f"{comparison}\n{line}"
    assert_orders_match(stored, expected, line)
