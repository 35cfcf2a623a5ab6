"""A newcomer's first hour: the README's first command run again and again in one folder, and what the
commands that run a worker do when it dies. Real embedded broker, real RocksDB, the real entry point."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from support.live import WorkerProcess, free_port

NOTICE = re.compile(r"^\d\d-\d\d \d\d:\d\d  \S+  (reminder|alert|status_change)  ", re.M)
SUMMARY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC  Unpaid .* events in ([\d,]+)  applied ([\d,]+)", re.M)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
MOVED = "local state of an earlier run moved from .orderflow/v1 to .orderflow/previous-state"


class Command:
    """`orderflow ARGS` in `cwd`: no ORDERFLOW_* settings but `env`; stdout to a file, or to a
    pseudo-terminal `columns` wide; stderr to a file."""

    def __init__(self, cwd: Path, *args: str, env: dict | None = None, columns: int | None = None):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_") and k not in ("COLUMNS", "LINES")}
        # Every run gets its own order API port: 6066 may be taken on a shared machine.
        env = {**clean, "ORDERFLOW_WEB_PORT": str(free_port()), "TERM": "xterm-256color", **(env or {})}
        name = f"{args[0]}-{time.monotonic_ns()}"
        self.err_path = cwd.parent / f"{name}.err"
        self._err = self.err_path.open("wb")
        self.terminal = None
        if columns:
            self.terminal, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
            stdout = slave
        else:
            self.out_path = cwd.parent / f"{name}.out"
            stdout = self.out_path.open("wb")
        self.screen = b""
        self.process = subprocess.Popen([sys.executable, "-m", "orderflow.streams", *args], cwd=cwd, env=env,
                                        stdin=subprocess.DEVNULL, stdout=stdout, stderr=self._err)
        if columns:
            os.close(slave)
        else:
            stdout.close()

    def out(self) -> str:
        if self.terminal is None:
            return self.out_path.read_text(errors="replace")
        while True:  # drain what the terminal has so far
            try:
                ready = os.read(self.terminal, 65536) if _readable(self.terminal) else b""
            except OSError:  # EIO: the command has exited and closed its side
                ready = b""
            if not ready:
                return self.screen.decode(errors="replace")
            self.screen += ready

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (found := pattern.search(self.out())):
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.err()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern.pattern!r} after {timeout} s:\n{self.out()[-2000:]}\n{self.err()[-2000:]}")
            time.sleep(0.1)
        return found

    def finish(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.out()
            self._err.close()
            if self.terminal is not None:
                os.close(self.terminal)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.finish()


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def broker_pid(process: subprocess.Popen) -> int:
    """The embedded broker: the one child process of the command."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_the_demo_starts_again_in_the_same_folder_however_the_last_run_ended(tmp_path):
    folder = tmp_path / "clone"
    folder.mkdir()
    # 1. The first run, killed outright once it shows notices; without a terminal the board is plain lines.
    first = Command(folder, "demo")
    first.wait_for(NOTICE)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert MOVED not in first.err()
    # 2. Again in the same folder, on a terminal 72 columns wide; its broker dies under it.
    second = Command(folder, "demo", columns=72)
    second.wait_for(re.compile(r"PAYMENT_REMINDER|OUT_OF_STOCK|CANCEL_REQUESTED"))
    os.kill(broker_pid(second.process), signal.SIGKILL)
    killed = time.monotonic()
    assert second.finish() == 1
    assert time.monotonic() - killed < 20
    assert MOVED in second.err(), second.err()
    assert second.err().strip().splitlines()[-1] == (
        "Error: the worker stopped: the embedded broker exited (killed by signal 9) "
        "(log: .orderflow/broker.log, .orderflow/demo.log)"), second.err()
    assert "Traceback" not in second.err()
    screen = ANSI.sub("", second.out())
    assert "orderflow demo" in screen and "Cancelled" in screen and "latest reminders" in screen
    widest = max(len(line) for line in re.split(r"[\r\n]", screen))
    assert widest <= 72, screen
    # 3. And again: it starts from scratch, processes the traffic and stops cleanly with Ctrl-C.
    third = Command(folder, "demo")
    third.wait_for(NOTICE)
    assert third.stop() == 0, third.err()
    assert MOVED in third.err()
    assert "Error" not in third.err() and "Traceback" not in third.err(), third.err()
    applied = [int(m.group(2).replace(",", "")) for m in SUMMARY.finditer(third.out())]
    assert applied and applied[-1] > 0, third.out()[-2000:]
    assert not (folder / ".orderflow" / "broker.address").exists()


@pytest.mark.parametrize("command", ["demo", "run"])
def test_a_worker_that_dies_at_start_ends_the_command_at_once_with_one_line(tmp_path, command):
    with socket.socket() as taken:  # the order API's port is taken
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        dying = Command(tmp_path, command, env={"ORDERFLOW_WEB_PORT": str(port)})
        status = dying.finish(timeout=60)
    assert status == 1
    assert time.monotonic() - started < 30
    last = dying.err().strip().splitlines()[-1]
    assert re.fullmatch(r"Error: the worker stopped: OSError: .*address already in use.*", last), dying.err()


def test_local_state_is_kept_for_its_own_cluster_and_moved_aside_for_another(own_broker, tmp_path):
    from orderflow.streams.kafka.broker import EmbeddedBroker, broker_binary
    from orderflow.streams.config import Config

    data_dir = tmp_path / "worker"

    def run_once(bootstrap: str) -> str:
        worker = WorkerProcess(bootstrap, data_dir)
        worker.wait_ready()
        assert worker.stop() == 0, worker.log()
        log = worker.log()
        worker.log_path.unlink()
        return log

    assert "moved" not in run_once(own_broker.bootstrap)
    assert "moved" not in run_once(own_broker.bootstrap)  # its own cluster: the state stays
    with EmbeddedBroker(broker_binary(Config()), log_path=tmp_path / "other.log") as other:
        log = run_once(other.bootstrap)
        moved = (f"local state of an earlier run moved from {data_dir}/v1 to {data_dir}/previous-state: it was "
                 f"built against cluster {own_broker.cluster_id}, not this one ({other.cluster_id})")
    assert moved in log, log
    assert (data_dir / "previous-state" / "tables").is_dir()
