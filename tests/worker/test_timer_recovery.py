"""Deadlines survive a worker restart, with or without its local RocksDB state.

A deadline that passed while no worker ran fires when one starts again, once;
one still pending fires on time (the deadline index comes back with the orders).
"""
from __future__ import annotations

import asyncio
import shutil

import pytest

from support.live import WorkerProcess, read_outputs, run
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.worker.clock import AcceleratedClock, wall_ms
from support.orders import HOUR, created

FACTOR = 14_400  # one wall second is four simulated hours


def _kinds(published, order_id):
    """What was published for the order, in a stable order (topics interleave as they are read)."""
    return sorted(r.get("kind") or r.get("reason") for _, r in published if r["order_id"] == order_id)


@pytest.mark.parametrize("local_state", ["kept", "wiped"])
def test_deadlines_that_passed_while_no_worker_ran_fire_once_at_restart(own_broker, tmp_path, local_state):
    bootstrap = own_broker.bootstrap
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    clock = AcceleratedClock(FACTOR, wall_ms() + 12_000)
    data_dir = tmp_path / "worker"
    first = WorkerProcess(bootstrap, data_dir, clock=clock.spec())
    try:
        first.wait_ready()
        while wall_ms() < clock.origin:
            run(asyncio.sleep(0.05))

        async def publish():
            async with Publisher(Config(broker=bootstrap)) as publisher:
                await publisher.send_event(created("restart-1", clock.origin))
                await publisher.flush()
        run(publish())
        # The 15-minute reminder fires while the first worker runs.
        seen = run(read_outputs(bootstrap, lambda out: "PAYMENT_REMINDER_15M" in _kinds(out, "restart-1"), 20))
        assert _kinds(seen, "restart-1") == ["CREATED", "PAYMENT_REMINDER_15M"]
    finally:
        assert first.stop() == 0, first.log()[-3000:]
    assert clock.now() < clock.origin + 16 * HOUR, "the first worker stopped too late for this plan"
    while clock.now() < clock.origin + 20 * HOUR:  # the 16-hour reminder falls due with no worker running
        run(asyncio.sleep(0.05))

    if local_state == "wiped":
        shutil.rmtree(data_dir)  # the second worker must restore the orders from the changelog
    second = WorkerProcess(bootstrap, data_dir, clock=clock.spec())
    try:
        second.wait_ready()
        # The 48-hour cancel, still pending at the restart, fires on time from the index restored with
        # the orders (within three wall seconds, twelve simulated hours, of its due time or of the restart).
        on_time = max(clock.origin + 48 * HOUR, clock.now()) + 12 * HOUR
        want = sorted(["CREATED", "PAYMENT_REMINDER_15M", "PAYMENT_REMINDER_16H", "UNPAID_TIMEOUT"])
        seen = run(read_outputs(bootstrap, lambda out: _kinds(out, "restart-1") == want, 30))
        assert _kinds(seen, "restart-1") == want
        assert clock.now() < on_time, f"the 48-hour cancel came {(clock.now() - on_time) / HOUR + 12:.1f} h late"
        while clock.now() < clock.origin + 60 * HOUR:  # time for any duplicate firing to show up
            run(asyncio.sleep(0.1))
        seen = run(read_outputs(bootstrap, lambda out: False, 1))
        assert _kinds(seen, "restart-1") == want
    finally:
        assert second.stop() == 0, second.log()[-3000:]
