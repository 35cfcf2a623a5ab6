"""Throughput: orderflow's full pipeline against raw aiokafka on the same messages.

    python bench/throughput.py [--orders N]

(a) baseline: raw aiokafka consume, Avro decode, keep state in a dict, produce
    one output per event (no framework, no durable state);
(b) orderflow run: Avro decode, lifecycle, RocksDB table and changelog, timers,
    outputs, on one worker;
(p) peer: a naive Faust agent (bench/peer_faust.py): Avro decode, a RocksDB-backed
    Faust table written per event, one awaited topic.send per event, on the
    aiokafka transport.
All read the same pre-published backlog from the embedded broker.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import common
import peer_faust
from orderflow.streams.kafka import messages, topics
from orderflow.streams.worker.clock import wall_ms


async def raw_pipeline(bootstrap: str, total: int) -> float:
    consumer = AIOKafkaConsumer("bench-raw-in", bootstrap_servers=bootstrap, group_id="bench-raw",
                                auto_offset_reset="earliest", max_poll_records=2000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    state: dict[str, dict] = {}
    seen = 0
    started = time.monotonic()
    try:
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for message in records:
                    event = messages.EVENTS.decode(message.value)
                    state[event["order_id"]] = event
                    await producer.send("bench-raw-out", message.value, key=message.key)
                    seen += 1
        await producer.flush()
        return time.monotonic() - started
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    records = common.traffic(args.orders, start=wall_ms() - 30 * 86_400_000)
    total = len(records)
    print(f"{args.orders} orders, {total} events; work dir {workdir}")
    with common.broker(workdir) as bootstrap:
        asyncio.run(common.publish(bootstrap, "bench-raw-in", records))
        raw_seconds = asyncio.run(raw_pipeline(bootstrap, total))
        print(f"(a) raw aiokafka consume-transform-produce: {total / raw_seconds:10,.0f} events/s")

        asyncio.run(common.publish(bootstrap, topics.ORDER_EVENTS.name, records))
        worker = common.start_worker(bootstrap, workdir / "worker")
        try:
            seconds = common.wait_consumed(bootstrap, "orderflow", topics.ORDER_EVENTS.name, total, timeout=1800)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        rate = total / seconds
        print(f"(b) orderflow, one worker:                 {rate:10,.0f} events/s "
              f"({rate / (total / raw_seconds):.2f} of the baseline; includes joining the group)")

        peer = peer_faust.start(bootstrap, "bench-raw-in", "bench-peer-out", "bench-peer", workdir / "peer")
        try:
            seconds = peer_faust.wait_consumed(peer, bootstrap, "bench-peer", "bench-raw-in", total, timeout=1800)
        finally:
            peer.send_signal(signal.SIGTERM)
            peer.wait(60)
        peer_rate = total / seconds
        print(f"(p) naive Faust agent (RocksDB table, awaited send per event): {peer_rate:,.0f} events/s "
              f"({peer_rate / (total / raw_seconds):.2f} of the baseline; includes joining the group)")


if __name__ == "__main__":
    main()
