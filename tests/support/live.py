"""Running real workers against the embedded broker, and reading what they publish."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from orderflow.streams.kafka import topics
from orderflow.streams.kafka.codec import codec_for_topic

OUTPUT_SPECS = tuple(dict.fromkeys(topics.OUTPUT_TOPICS.values()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """`orderflow run` in a subprocess, pointed at a test broker, with its own data dir."""

    def __init__(self, bootstrap: str, data_dir: Path, **settings: str):
        self.log_path = data_dir.with_suffix(".log")
        self.web_port = free_port()
        env = {**os.environ, "ORDERFLOW_BROKER": bootstrap, "ORDERFLOW_DATA_DIR": str(data_dir),
               "ORDERFLOW_WEB_PORT": str(self.web_port),
               "ORDERFLOW_TIMER_INTERVAL": "0.05", "ORDERFLOW_BROKER_KIND": "tansu"}
        env.update({f"ORDERFLOW_{name.upper()}": value for name, value in settings.items()})
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "orderflow.streams", "run"], env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0, times: int = 1) -> None:
        """Ready once its tables are recovered (it logs that after each rebalance)."""
        deadline = time.monotonic() + timeout
        while self.log().count("orders recovered") < times:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


async def read_outputs(bootstrap: str, enough, timeout: float = 60.0, specs=OUTPUT_SPECS) -> list[tuple[str, dict]]:
    """(topic, record) of every output published so far, once `enough(outputs)` holds or time runs out."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(spec.name, p) for spec in specs
                      for p in consumer.partitions_for_topic(spec.name) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        codecs = {spec.name: codec_for_topic(spec) for spec in specs}
        seen: list[tuple[str, dict]] = []
        deadline = time.monotonic() + timeout
        while not enough(seen) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen += [(m.topic, codecs[m.topic].decode(m.value)) for m in records]
        return seen
    finally:
        await consumer.stop()


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text, parsed by the client library's own parser: (name, sorted
    labels) -> value."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def common_free_port(addresses) -> int:
    """A port free on every address (as 6066 would be on each of several hosts)."""
    while True:
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as other:
                    other.bind((address, port))
            return port
        except OSError:
            continue


def wait_for(condition, timeout: float, what: str, every: float = 0.1):
    """The first truthy value of `condition()`, asked every `every` seconds; an AssertionError naming
    `what` if none comes within `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(every)
    return result


def run(coro):
    return asyncio.run(coro)
