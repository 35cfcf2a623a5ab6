"""Another team's client against the embedded broker: the README's confluent-kafka reader, run as it stands
there, decodes the status changes a live worker publishes with nothing but the .avsc files."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import confluent_kafka

from support.live import WorkerProcess, run
from orderflow.streams.kafka.publish import Publisher
from support.readme import readme_examples

ROOT = Path(__file__).resolve().parents[2]


def readme_reader() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Clients of the embedded broker", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def publish(config, events: list[dict]) -> None:
    async with Publisher(config) as publisher:
        for event in events:
            await publisher.send_event(event)
        await publisher.flush()


def test_the_readme_reader_decodes_a_live_workers_status_changes_with_confluent_kafka(own_broker, tmp_path):
    from orderflow.streams.config import Config

    assert confluent_kafka.libversion()[0].startswith("2.16")
    worker = WorkerProcess(own_broker.bootstrap, tmp_path / "worker")
    reader = None
    try:
        worker.wait_ready()
        examples = {e["event_type"]: e for e in readme_examples()}
        # Now, so that the worker applies them at once (a deadline of the past would fire too).
        now = int(time.time() * 1000)
        run(publish(Config(broker=own_broker.bootstrap),
                    [{**examples["ORDER_CREATED"], "event_time": now - 1000},
                     {**examples["ORDER_PAID"], "event_time": now}]))
        script = tmp_path / "status_changes.py"
        script.write_text(readme_reader())
        reader = subprocess.Popen([sys.executable, str(script), own_broker.bootstrap, str(ROOT / "schemas")],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        deadline = time.monotonic() + 60
        while len(lines) < 2 and time.monotonic() < deadline:
            line = reader.stdout.readline()  # the reader flushes each record
            if not line:
                break
            lines.append(json.loads(line))
    finally:
        if reader is not None:
            reader.kill()
            reader.wait()
        worker.stop()
    assert [(r["order_id"], r["from_status"], r["to_status"], r["reason"]) for r in lines] == [
        ("ord-1001", None, "UNPAID", "CREATED"), ("ord-1001", "UNPAID", "AWAITING_SHIPMENT", "PAID")], \
        (lines, reader.stderr.read() if reader else "")
    assert all(set(r) >= {"output_id", "at"} for r in lines)
