"""Shared parts of the benchmarks: a broker, traffic, and waiting for a consumer group."""
from __future__ import annotations

import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.config import Config
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.broker import EmbeddedBroker, broker_binary
from orderflow.streams.kafka.tansu import true_end_offsets

PARTITIONS = 4


@contextmanager
def broker(log_dir: Path):
    with EmbeddedBroker(broker_binary(Config()), log_dir / "broker.log") as embedded:
        asyncio.run(ensure_topics({"bootstrap_servers": embedded.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
        yield embedded.bootstrap


def traffic(orders: int, start: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, Avro value) of the simulated events of `orders` orders, in event-time order."""
    return [(e["order_id"].encode(), messages.EVENTS.encode(e))
            for e in Simulator(seed=seed, start=start).events(orders)]


async def publish(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_committed(bootstrap: str, group: str, topic: str, total: int, timeout: float,
                         poll: float = 0.25) -> float:
    """Seconds until `group` committed `total` records of `topic`. One client asks all along:
    a client started per poll would take CPU from the worker being measured."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    started = time.monotonic()
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        while True:
            committed = [await consumer.committed(TopicPartition(topic, p)) for p in partitions]
            if sum(offset for offset in committed if offset) >= total:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{group} did not consume {total} records of {topic} in {timeout} s")
            await asyncio.sleep(poll)
    finally:
        await consumer.stop()


def wait_consumed(bootstrap: str, group: str, topic: str, total: int, timeout: float) -> float:
    """Seconds until the group committed `total` records of `topic`."""
    return asyncio.run(wait_committed(bootstrap, group, topic, total, timeout))


def wait_drained(bootstrap: str, group: str, topic: str, timeout: float) -> float:
    """Seconds until the group committed every record `topic` holds now (e.g. the worker's own
    analytics facts, which it aggregates after the events that caused them)."""
    async def drained() -> float:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await true_end_offsets({"bootstrap_servers": bootstrap}, partitions)
        return await wait_committed(bootstrap, group, topic, sum(ends.values()), timeout)
    return asyncio.run(drained())


def start_worker(bootstrap: str, data_dir: Path, **settings: str) -> subprocess.Popen:
    env = {**os.environ, "ORDERFLOW_BROKER": bootstrap, "ORDERFLOW_BROKER_KIND": "tansu",
           "ORDERFLOW_DATA_DIR": str(data_dir), "ORDERFLOW_PARTITIONS": str(PARTITIONS),
           "ORDERFLOW_LOG_LEVEL": "info", "ORDERFLOW_WEB_PORT": str(free_port())}
    env.update({f"ORDERFLOW_{k.upper()}": v for k, v in settings.items()})
    log = (data_dir.parent / f"{data_dir.name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "orderflow.streams", "run"], env=env, stdout=log, stderr=log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(log: Path, times: int = 1, timeout: float = 600.0) -> float:
    """Seconds until the worker logged its recovery `times` times (it does after each rebalance)."""
    started = time.monotonic()
    while not log.exists() or log.read_text(errors="replace").count("orders recovered") < times:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"worker not ready after {timeout} s; see {log}")
        time.sleep(0.05)
    return time.monotonic() - started


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def own_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
