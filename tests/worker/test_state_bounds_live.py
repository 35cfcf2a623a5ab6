"""Caps and retention on the embedded broker: what the core promises (tests/lifecycle/test_state_bounds.py) holds
in a worker, its changelog and a restore after a wiped disk; compared with a replay of the same input."""
from __future__ import annotations

import asyncio
import shutil
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from support.live import WorkerProcess, run
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.clock import wall_ms
from support.orders import DAY, HOUR, MIN, created, paid, seller_cancelled, update
from support.reliability import (CHANGELOG, OutputLog, assert_orders_match, compare_outputs, expected_from_replay,
                                 final_tally, frozen_clock, latest_state, publish_events, reconciles, rocksdb_copies,
                                 wait_caught_up)
from test_batch_protocol import assert_matches_replay, run_to_completion, traffic

LIMITS = Policy.load().limits
INVENTORY_CHANGELOG = "orderflow-inventory-changelog"
HOLD = b"hold|sku-1|gone|0"


def test_300_events_of_an_order_that_never_appears_are_dead_lettered_and_the_worker_goes_on(
        own_broker, tmp_path, record_property):
    """Once, these made one order value 2.3 MB: its changelog record was refused and the worker stopped
    for good. Now the events past the cap are dead-lettered at once, the held ones after the grace
    period, and every other order's outputs are the replay's."""
    origin = wall_ms()
    events = traffic(origin)
    start = events[0]["event_time"]
    ghost = [update("ghost", start + n * 5000) for n in range(300)]
    events = sorted(events + ghost, key=lambda e: e["event_time"])
    expected = expected_from_replay(events, origin)
    figures = run_to_completion(own_broker.bootstrap, tmp_path, events, origin, {})
    assert figures["first_rc"] is None, figures["first_log"][-3000:]  # it was still at work when caught up
    letters = [r for topic, r in figures["pairs"] if topic == topics.DEAD_LETTERS.name and r["order_id"] == "ghost"]
    reasons = {r["output_id"]: r["reason"] for r in letters}
    assert sum("held already" in reason for reason in reasons.values()) == 300 - LIMITS.held_events
    assert sum("never appeared" in reason for reason in reasons.values()) == LIMITS.held_events
    assert "ghost" not in figures["changelog"]
    assert_matches_replay(figures, expected, record_property, "orphan_cap")


async def changelog_values(bootstrap: str, keys: set[bytes], topic: str = CHANGELOG) -> dict[bytes, list]:
    """Every value the changelog holds for `keys`, in order (None: a tombstone)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        values: dict[bytes, list] = {key: [] for key in keys}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for m in records:
                    if m.key in values:
                        values[m.key].append(m.value)
            # The ends as fetched (the broker's listed ends can lag: streams/kafka/tansu.py).
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all((h := consumer.highwater(tp)) is not None and positions[tp] >= h for tp in partitions):
                break
        return values
    finally:
        await consumer.stop()


def holds_of(data_dir, order_id: str) -> list[str]:
    inventory = latest_state(rocksdb_copies([data_dir], table="inventory"))[0]
    return [key for key in inventory if key.startswith("hold|") and key.split("|")[2] == order_id]


def test_a_finished_order_is_forgotten_with_a_tombstone_and_a_restore_does_not_bring_it_back(
        own_broker, tmp_path, record_property):
    """Two orders finish; a worker keeps them (frozen clock before their retention ends) and stops. A
    worker whose clock is past their retention forgets them: each one's last changelog record is a
    tombstone and the paid one's stock hold is deleted. A late copy of a forgotten order's creation
    is dead-lettered, not used to start it again. After a wipe of the local state, the restored worker
    holds what the replay holds (the forgotten orders stay forgotten) and judges a late copy of the
    payment as the replay does, at the partition's stream time restored with its state."""
    bootstrap = own_broker.bootstrap
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    retention = Policy.load().default.retention
    t = wall_ms() - 100 * DAY
    gone_created = created("gone", t)
    first = [gone_created, paid("gone", t + MIN), seller_cancelled("gone", t + HOUR), created("gone-unpaid", t)]
    kept_at = t + 3 * DAY
    origin = t + 2 * DAY + retention + DAY  # past both orders' retention (the unpaid one was cancelled at t + 48 h)
    second = [created("kept", origin - 12 * HOUR), update("gone", origin - 12 * HOUR), dict(gone_created)]
    # Read first by the restored worker: judged at the partition's stream time, kept with its state.
    third = [dict(first[1])]
    expected = expected_from_replay(first + second + third, origin)
    assert set(expected.orders) == {"kept"}
    data_dir = tmp_path / "worker"

    async def scenario() -> dict:
        figures: dict = {}
        async with OutputLog(bootstrap) as log:
            worker = WorkerProcess(bootstrap, data_dir, clock=frozen_clock(kept_at))
            try:
                await asyncio.to_thread(worker.wait_ready, 120)
                await wait_caught_up(bootstrap, log, await publish_events(bootstrap, first), 120)
            finally:
                assert worker.stop() == 0, worker.log()[-3000:]
            figures["kept"] = latest_state(rocksdb_copies([data_dir]))[0]
            figures["holds_kept"] = holds_of(data_dir, "gone")

            recoveries = worker.log().count("orders recovered")  # the workers of a data dir share a log
            worker = WorkerProcess(bootstrap, data_dir, clock=frozen_clock(origin))
            try:
                await asyncio.to_thread(worker.wait_ready, 120, recoveries + 1)
                await wait_caught_up(bootstrap, log, await publish_events(bootstrap, second), 120)
                deadline = time.monotonic() + 60
                while True:  # forgetting has no output: wait for the tombstones, the stock hold's last
                    values = await changelog_values(bootstrap, {b"gone", b"gone-unpaid"})
                    values.update(await changelog_values(bootstrap, {HOLD}, INVENTORY_CHANGELOG))
                    if all(v and v[-1] is None for v in values.values()) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                figures["changelog"] = values
            finally:
                assert worker.stop() == 0, worker.log()[-3000:]
            figures["tally"] = final_tally(worker.log())
            figures["stored"] = latest_state(rocksdb_copies([data_dir]))[0]
            figures["holds_forgotten"] = holds_of(data_dir, "gone")

            shutil.rmtree(data_dir)
            recoveries = worker.log().count("orders recovered")
            worker = WorkerProcess(bootstrap, data_dir, clock=frozen_clock(origin))
            try:
                await asyncio.to_thread(worker.wait_ready, 120, recoveries + 1)
                await wait_caught_up(bootstrap, log, await publish_events(bootstrap, third), 120)
            finally:
                assert worker.stop() == 0, worker.log()[-3000:]
            figures["restored"] = latest_state(rocksdb_copies([data_dir]))[0]
            figures["holds_restored"] = holds_of(data_dir, "gone")
            figures["pairs"] = log.pairs()
        return figures

    figures = run(scenario())
    assert set(figures["kept"]) == {"gone", "gone-unpaid"} and figures["holds_kept"] == [HOLD.decode()]
    for key, values in figures["changelog"].items():
        assert len(values) >= 2 and values[0] is not None and values[-1] is None, (key, values)
    assert figures["holds_forgotten"] == [] and figures["holds_restored"] == []
    comparison = compare_outputs(figures["pairs"], expected)
    assert comparison.ok, str(comparison)
    late = [r for topic, r in figures["pairs"] if topic == topics.DEAD_LETTERS.name and "older than the retention" in r["reason"]]
    assert [r["order_id"] for r in late] == ["gone", "gone"], late
    assert reconciles(figures["tally"]), figures["tally"]
    assert_orders_match(figures["stored"], expected, "after forgetting")
    assert_orders_match(figures["restored"], expected, "restored after a wipe")
    record_property("forgotten_then_restored", str({k: len(v) for k, v in figures["changelog"].items()}))
