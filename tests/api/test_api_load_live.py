"""The order API of a live worker holding many orders: read through the listing it built from a
restore, capped at api_concurrency requests at a time, and stopped when the client hangs up.

The orders are made by the core (created, half of them paid) and put in the orders changelog, as
another worker would have left them: the worker restores them with no listing and builds it before
it serves the partitions. Its answers are compared with order_query's scan of the same orders.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections import Counter

from aiokafka import AIOKafkaProducer

from orderflow.streams.api.order_query import Query
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.lifecycle import Policy
from orderflow.tables.json_table import encode
from support.live import WorkerProcess, metric_samples, run, wait_for
from support.orders import MIN, created, paid
from support.reliability import frozen_clock

ORDERS = 20_000
PARTITIONS = 4
SLOW = "/orders/counts?region=NOWHERE"  # no counter answers it: every order is read


def made_orders(origin: int) -> dict[str, dict]:
    book = OrderBook({}, Policy.load())
    for n in range(ORDERS):
        order_id, at = f"load-{n:05}", origin - 30 * MIN + n
        book.apply(created(order_id, at, region=("GB", "ID")[n % 2]), at)
        if n % 2:
            book.apply(paid(order_id, at + 1), at + 1)
    return book.orders


async def into_changelog(bootstrap: str, orders: dict[str, dict]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send("orderflow-orders-changelog", encode(order), key=order_id.encode())
                   for order_id, order in orders.items()]
        for future in futures:
            await future
    finally:
        await producer.stop()


def get(worker: WorkerProcess, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=60) as response:
        body = response.read()
        return json.loads(body) if path != "/metrics" else body.decode()


def metrics(worker: WorkerProcess) -> dict[tuple, float]:
    return metric_samples(get(worker, "/metrics"))


def reads(worker: WorkerProcess, state: str) -> float:
    return metrics(worker)[("orderflow_api_reads", (("state", state),))]


def test_a_restored_worker_lists_and_counts_what_a_scan_gives_one_request_at_a_time(own_broker, tmp_path):
    origin = 1_800_000_000_000
    orders = made_orders(origin)
    run(ensure_topics({"bootstrap_servers": own_broker.bootstrap}, topics.ALL_TOPICS, PARTITIONS, 1))
    run(into_changelog(own_broker.bootstrap, orders))
    worker = WorkerProcess(own_broker.bootstrap, tmp_path / "worker", partitions=str(PARTITIONS),
                           clock=frozen_clock(origin), api_concurrency="1")
    try:
        worker.wait_ready(timeout=180)
        assert worker.log().count("stored orders by status") == PARTITIONS  # listed anew after the restore

        counts = get(worker, "/orders/counts")
        assert counts["statuses"] == {**{s: 0 for s in counts["statuses"]},
                                      **Counter(order["status"] for order in orders.values())}
        assert counts["total"] == ORDERS
        for params in ("tab=To%20ship&sort=-paid_at&limit=50", "tab=Unpaid&sort=-total_amount&limit=500&region=GB"):
            page = get(worker, f"/orders?{params}")
            query = Query.parse(dict(pair.split("=") for pair in params.replace("%20", " ").split("&")))
            expected = sorted(filter(query.accepts, orders.values()), key=query.key)[:query.limit]
            assert len(expected) == query.limit
            assert [o["order_id"] for o in page["orders"]] == [o["order_id"] for o in expected]

        # A client that hangs up: its read stops at the next pause, counted as abandoned.
        with socket.create_connection(("127.0.0.1", worker.web_port)) as client:
            client.sendall(f"GET {SLOW} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            wait_for(lambda: reads(worker, "running") == 1, 30, "the read under way")
        abandoned = ("orderflow_api_requests_abandoned_total", ())
        wait_for(lambda: metrics(worker).get(abandoned) == 1, 30, "the read stopped")
        assert reads(worker, "running") == 0

        # Four at once with api_concurrency 1: one reads, the others wait their turn; all are answered.
        seen = {"running": 0.0, "waiting": 0.0}
        answers: list[dict] = []
        clients = [threading.Thread(target=lambda: answers.append(get(worker, SLOW))) for _ in range(4)]
        for client in clients:
            client.start()
        while any(client.is_alive() for client in clients):
            for state in seen:
                seen[state] = max(seen[state], reads(worker, state))
            time.sleep(0.02)
        assert seen["running"] == 1 and seen["waiting"] >= 1, seen
        assert [answer["total"] for answer in answers] == [0] * 4
    finally:
        worker.stop()
