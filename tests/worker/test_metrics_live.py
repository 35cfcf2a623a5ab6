"""/health, /ready and /metrics (streams/worker/metrics.py): a worker that has not started says it is
not ready; a live worker on the embedded broker, scraped and parsed with prometheus-client's own
parser, counts what a replay of the same traffic counts."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST

from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.app import create_app
from orderflow.streams.worker.clock import SystemClock, wall_ms
from support.live import WorkerProcess, metric_samples, run, wait_for
from support.orders import MIN, created, paid
from support.reliability import expected_from_replay, frozen_clock, publish_events

PARTITIONS = 4


def get(worker: WorkerProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_worker_not_started_serves_health_but_is_not_ready():
    worker = create_app(Config(broker="127.0.0.1:9"), Policy.load(), SystemClock())

    async def requests():
        async with TestClient(TestServer(worker.app.web.web_app)) as client:
            answers = {}
            for path in ("/health", "/ready", "/metrics"):
                response = await client.get(path)
                answers[path] = (response.status, response.headers["Content-Type"], await response.text())
            return answers

    answers = asyncio.run(requests())
    assert answers["/health"][0] == 200 and json.loads(answers["/health"][2]) == {"status": "serving"}
    status, _, body = answers["/ready"]
    assert status == 503 and json.loads(body) == {"ready": False, "rebalancing": True, "assigned": [],
                                                  "recovering": [], "lag": {}, "max_lag": 1000}
    status, content_type, text = answers["/metrics"]
    assert status == 200 and content_type == CONTENT_TYPE_LATEST
    samples = metric_samples(text)
    assert samples[("orderflow_events_total", (("outcome", "in"),))] == 0
    assert samples[("orderflow_partitions", (("state", "assigned"),))] == 0


def test_a_live_worker_is_ready_once_recovered_and_its_metrics_count_what_the_replay_counts(own_broker, tmp_path):
    origin = wall_ms()
    events = [created(f"met-{n}", origin - 40 * MIN + n) for n in range(12)]
    events += [paid(f"met-{n}", origin - 30 * MIN + n) for n in range(0, 12, 2)]
    events += [events[0], paid("met-nobody", origin - 10 * MIN)]  # a duplicate; an order not created yet
    expected = expected_from_replay(events, origin)
    per_topic = {spec.name: sum(1 for topic, _ in expected.outputs.values() if topic == spec.name)
                 for spec in topics.OUTPUT_TOPICS.values()}
    assert per_topic[topics.STATUS_CHANGES.name] == 18 and per_topic[topics.REMINDERS.name] == 6

    run(ensure_topics({"bootstrap_servers": own_broker.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
    worker = WorkerProcess(own_broker.bootstrap, tmp_path / "worker", clock=frozen_clock(origin))
    try:
        worker.wait_ready(120)
        assert get(worker, "/health") == (200, json.dumps({"status": "serving"}))
        ready = wait_for(lambda: (answer := get(worker, "/ready"))[0] == 200 and json.loads(answer[1]), 60, "/ready")
        assert ready["assigned"] == list(range(PARTITIONS)) and ready["recovering"] == []
        before = metric_samples(get(worker, "/metrics")[1])
        assert before[("orderflow_events_total", (("outcome", "in"),))] == 0

        run(publish_events(own_broker.bootstrap, events))
        delivered = ("orderflow_records_delivered_total", (("topic", topics.REMINDERS.name),))
        after = wait_for(lambda: (samples := metric_samples(get(worker, "/metrics")[1])).get(delivered) == 6 and samples,
                         60, "the reminders")
        # The order book's counts, as the replay's; what was delivered, as the replay publishes it.
        for outcome in ("in", "applied", "dead_lettered", "duplicates", "buffered"):
            assert after[("orderflow_events_total", (("outcome", outcome),))] == expected.tally[outcome], outcome
        for topic, count in per_topic.items():
            assert after.get(("orderflow_records_delivered_total", (("topic", topic),)), 0) == count, topic
        assert after[("orderflow_delivery_failures_total", ())] == 0
        # Six 15-minute reminders, each fired when the worker caught up (its clock stands at origin).
        assert after[("orderflow_timer_lag_seconds_count", ())] == 6
        assert after[("orderflow_timer_lag_seconds_bucket", (("le", "3600.0"),))] == 6
        assert after[("orderflow_timer_lag_seconds_bucket", (("le", "60.0"),))] == 0
        assert after[("orderflow_deadlines_pending", ())] > 0
        assert after[("orderflow_partitions", (("state", "recovered"),))] == PARTITIONS
        lags = {labels: value for (name, labels), value in after.items() if name == "orderflow_consumer_lag"}
        assert lags and set(lags.values()) == {0}
        inputs = after[("orderflow_batch_inputs_sum", (("topic", topics.ORDER_EVENTS.name),))]
        assert inputs == len(events)
        assert after[("orderflow_batch_seconds_count", (("topic", topics.ORDER_EVENTS.name),))] >= 1
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
