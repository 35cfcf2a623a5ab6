"""Timers and state at scale: timer lag, restart-to-ready and memory with many open orders.

    python bench/state.py [--orders 1000000]

Loads --orders unpaid orders (three pending deadlines each: 15 min, 16 h,
48 h) into one worker, then measures:
(d) timer firing lag p50/p99 of probe orders whose 15-minute reminder falls
    due during the run, with all the others pending; baseline: the lag of
    asyncio.sleep on this machine in the same run;
(e) restart-to-ready from local RocksDB, and after wiping local state
    (changelog restore); baseline: reading the same changelogs (every table's)
    with a bare consumer;
(f) peak RSS of the worker with the orders open; baseline: an empty worker;
(g) RocksDB bytes per open order (orders table, and deadline index), then per
    finished order: --finished simulated orders run to their end are added
    and the growth divided by them. Sizes are the SST files' after a flush.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from rocksdict import Options, Rdict

import common
from latency import percentile
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.kafka.tansu import FETCH_WAIT_MS
from orderflow.streams.worker.clock import wall_ms

MIN = 60_000


def created_events(count: int, event_time: int, prefix: str) -> list[dict]:
    """`count` ORDER_CREATED events at `event_time`, with ids under `prefix`."""
    events = (e for e in Simulator(seed=5, orders_per_hour=3_600_000).events(count)
              if e["event_type"] == "ORDER_CREATED")
    return [{**e, "order_id": f"{prefix}-{e['order_id']}", "event_id": f"{prefix}-{e['event_id']}",
             "event_time": event_time} for e in events]


def encoded(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e["order_id"].encode(), messages.EVENTS.encode(e)) for e in events]


async def sleep_lag(samples: int = 200) -> list[float]:
    lags = []
    for _ in range(samples):
        due = time.monotonic() + 0.01
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - due)
    return lags


async def reminder_lags(bootstrap: str, probes: int, spread_s: float) -> list[float]:
    """Publish probe orders whose 15-minute reminder is due over the next `spread_s`; measure the lag."""
    reminders = codec_for_topic(topics.REMINDERS)
    # The broker holds a waiting fetch for its whole wait (streams/kafka/tansu.py): keep it short, as the worker does.
    consumer = AIOKafkaConsumer(topics.REMINDERS.name, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                group_id=f"bench-timers-{time.monotonic_ns()}", fetch_max_wait_ms=FETCH_WAIT_MS)
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()
    start = wall_ms() + 3000
    probe_events = created_events(probes, 0, "probe")
    for n, event in enumerate(probe_events):
        event["event_time"] = start + int(n * spread_s * 1000 / probes) - 15 * MIN  # reminder due at start + n*step
    records = encoded(probe_events)
    await common.publish(bootstrap, topics.ORDER_EVENTS.name, records)
    lags: list[float] = []
    deadline = time.monotonic() + spread_s + 60
    while len(lags) < len(records) and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=100)
        now = wall_ms()
        for messages_ in batch.values():
            for message in messages_:
                notice = reminders.decode(message.value)
                if notice["order_id"].startswith("probe-"):
                    lags.append((now - notice["at"]) / 1000)
    await consumer.stop()
    return lags


CHANGELOGS = [f"orderflow-{table}-changelog" for table in ("orders", "deadlines", "inventory", "analytics")]


async def read_changelog(bootstrap: str) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(*CHANGELOGS, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=5000)
    started = time.monotonic()
    await consumer.start()
    count, idle = 0, 0
    while idle < 3:
        batch = await consumer.getmany(timeout_ms=300)
        idle = 0 if batch else idle + 1
        count += sum(len(r) for r in batch.values())
    await consumer.stop()
    return count, time.monotonic() - started - 0.9


def table_bytes(data: Path, table: str) -> int:
    """SST bytes of a stopped worker's table, every partition, after flushing what its WAL holds."""
    total = 0
    for path in sorted(data.rglob(f"{table}-*.db")):
        db = Rdict(str(path), options=Options(raw_mode=True))
        try:
            db.flush()
            total += db.property_int_value("rocksdb.total-sst-files-size")
        finally:
            db.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--finished", type=int, default=20_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    data = workdir / "worker"
    log = workdir / "worker.log"
    with common.broker(workdir) as bootstrap:
        empty = common.start_worker(bootstrap, workdir / "empty")
        common.wait_ready(workdir / "empty.log")
        time.sleep(2)
        empty_rss = common.peak_rss_mib(empty.pid)
        empty.send_signal(signal.SIGTERM)
        empty.wait(60)

        # Events a minute old: every order keeps its three deadlines pending through the run.
        load = encoded(created_events(args.orders, wall_ms() - MIN, "open"))
        asyncio.run(common.publish(bootstrap, topics.ORDER_EVENTS.name, load))
        worker = common.start_worker(bootstrap, data)
        loading = common.wait_consumed(bootstrap, "orderflow", topics.ORDER_EVENTS.name, len(load), timeout=7200)
        print(f"loaded {len(load):,} open orders ({3 * len(load):,} pending deadlines) in {loading:.0f} s")
        # The lag is measured on a worker at rest: not while it still aggregates the load's analytics facts.
        settling = common.wait_drained(bootstrap, "orderflow", topics.ANALYTICS_FACTS.name, timeout=7200)
        print(f"    and its analytics facts {settling:.0f} s later")

        baseline = asyncio.run(sleep_lag())
        lags = asyncio.run(reminder_lags(bootstrap, args.probes, spread_s=10.0))
        print(f"(d) baseline: asyncio.sleep lag             p50 {percentile(baseline, 50) * 1000:7.1f} ms   "
              f"p99 {percentile(baseline, 99) * 1000:7.1f} ms")
        if lags:
            print(f"(d) timer firing lag, {3 * len(load):,} pending  p50 {percentile(lags, 50) * 1000:7.1f} ms   "
                  f"p99 {percentile(lags, 99) * 1000:7.1f} ms  ({len(lags)} of {args.probes} probes fired)")
        rss = common.peak_rss_mib(worker.pid)
        print(f"(f) peak RSS, empty worker (baseline):        {empty_rss:8.0f} MiB")
        print(f"(f) peak RSS with {len(load):,} open orders:    {rss:8.0f} MiB")

        worker.send_signal(signal.SIGTERM)
        worker.wait(300)
        sizes = {table: table_bytes(data, table) for table in ("orders", "deadlines")}
        print(f"(g) RocksDB bytes per open order: orders {sizes['orders'] / len(load):6.0f}, "
              f"deadline index {sizes['deadlines'] / len(load):5.0f} ({3 * len(load):,} deadlines)")
        records, raw_seconds = asyncio.run(read_changelog(bootstrap))
        print(f"(e) baseline: bare consumer reads the changelogs ({records:,} records): {raw_seconds:6.1f} s")
        for label, wipe in (("from local RocksDB", False), ("after wiping local state", True)):
            if wipe:
                shutil.rmtree(data)
            log.write_text("")
            worker = common.start_worker(bootstrap, data)
            ready = common.wait_ready(log)
            print(f"(e) restart-to-ready {label}: {ready:6.1f} s")
            worker.send_signal(signal.SIGTERM)
            worker.wait(300)

        # Finished orders: simulated lifecycles two months old, every deadline of theirs past.
        history = common.traffic(args.finished, wall_ms() - 60 * 24 * 60 * MIN)
        asyncio.run(common.publish(bootstrap, topics.ORDER_EVENTS.name, history))
        worker = common.start_worker(bootstrap, data)
        common.wait_consumed(bootstrap, "orderflow", topics.ORDER_EVENTS.name, len(load) + args.probes + len(history),
                             timeout=7200)
        time.sleep(10)  # the deadlines past fire once the worker has caught up
        worker.send_signal(signal.SIGTERM)
        worker.wait(300)
        grown = table_bytes(data, "orders") - sizes["orders"]
        print(f"(g) RocksDB bytes per finished order ({args.finished:,} simulated to their end): "
              f"{grown / args.finished:6.0f}")


if __name__ == "__main__":
    main()
