"""End-to-end latency: event in -> status change out, at a fixed rate.

    python bench/latency.py --rate 1000 [--seconds 20]

Publishes ORDER_CREATED events at a steady rate to a running-from-scratch
worker and times each CREATED status change from the moment its event was
sent. Baseline: the same publish-and-consume round trip through the broker
alone (a consumer reading order-events directly), in the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import common
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.kafka.tansu import FETCH_WAIT_MS
from orderflow.streams.worker.clock import wall_ms


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def round_trips(bootstrap: str, in_topic: str, out_topic: str, rate: float, seconds: float,
                      key_of) -> list[float]:
    """Send created events to `in_topic` at `rate`/s; return the seconds until each one's answer on `out_topic`."""
    # A short fetch wait: the embedded broker holds a waiting fetch for all of it.
    consumer = AIOKafkaConsumer(out_topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                group_id=f"bench-latency-{time.monotonic_ns()}", fetch_max_wait_ms=FETCH_WAIT_MS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    total = int(rate * seconds)
    events = Simulator(seed=11, start=wall_ms(), orders_per_hour=3_600_000).events(total)
    created = (e for e in events if e["event_type"] == "ORDER_CREATED")

    async def receive():
        while len(latencies) < total:
            batch = await consumer.getmany(timeout_ms=200)
            arrived = time.monotonic()
            for records in batch.values():
                for message in records:
                    key = key_of(message.value)
                    if key in sent:
                        latencies.append(arrived - sent.pop(key))

    receiver = asyncio.ensure_future(receive())
    started = time.monotonic()
    for n in range(total):
        event = next(created)
        event["event_time"] = wall_ms()
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        sent[event["order_id"]] = time.monotonic()
        await producer.send(in_topic, messages.EVENTS.encode(event), key=event["order_id"].encode())
    try:
        await asyncio.wait_for(receiver, timeout=60)
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    return latencies


def report(name: str, latencies: list[float]) -> None:
    print(f"{name:42} p50 {percentile(latencies, 50) * 1000:8.1f} ms   p99 {percentile(latencies, 99) * 1000:8.1f} ms"
          f"   mean {statistics.fmean(latencies) * 1000:8.1f} ms  ({len(latencies)} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    status = codec_for_topic(topics.STATUS_CHANGES)
    with common.broker(workdir) as bootstrap:
        baseline = asyncio.run(round_trips(bootstrap, "bench-latency", "bench-latency", args.rate, args.seconds,
                                           lambda value: messages.EVENTS.decode(value)["order_id"]))
        report(f"(c) baseline: broker round trip at {args.rate:,.0f}/s", baseline)
        worker = common.start_worker(bootstrap, workdir / "worker")
        try:
            common.wait_ready(workdir / "worker.log")
            measured = asyncio.run(round_trips(bootstrap, topics.ORDER_EVENTS.name, topics.STATUS_CHANGES.name,
                                               args.rate, args.seconds, lambda value: status.decode(value)["order_id"]))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        report("(c) orderflow: event in -> status change out", measured)
        print(f"    p99 ratio to the baseline: {percentile(measured, 99) / percentile(baseline, 99):.1f}")


if __name__ == "__main__":
    main()
