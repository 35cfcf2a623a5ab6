"""The order API with many orders in state: a page of a tab and the counts, beside reading one order.

    python bench/api.py [--orders 1000000] [--requests 200]

Puts --orders orders in every status into a worker's state (their changelog
records produced straight to the broker, as a worker with an empty disk then
restores them, and lists them by status on recovery), then times, with one
client and one request at a time, over HTTP on the same worker:
(h) baseline: GET /orders/{id} of random orders (one RocksDB read);
(h) GET /orders?tab=To ship&limit=50 (newest first, the seller centre's default);
(h) GET /orders?tab=To ship&limit=50 from a cursor deep in the tab;
(h) GET /orders/counts;
(h) GET /orders/counts?region=UK, which the listing cannot answer alone: it reads every
    order of the statuses counted (the cost a scan has).
The orders are copies of simulated orders replayed through the core, under new ids and times.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import signal
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

import common
from latency import percentile
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.clock import wall_ms

DAY = 24 * 3600 * 1000


def templates(count: int = 2000) -> list[dict]:
    """Orders in every status: simulated lifecycles replayed through the core, stopped at four
    points of their month."""
    events = list(Simulator(seed=5, start=wall_ms() - 30 * DAY).events(count))
    models = []
    for share in (0.3, 0.5, 0.7, 1.0):
        book = OrderBook({}, Policy.load())
        until = events[int((len(events) - 1) * share)]["event_time"]
        for _ in replay((Line(n, event) for n, event in enumerate(events)), until, book.policy, book):
            pass
        models += [order for order in book.orders.values() if order.get("status")]
    return models


def copies(orders: int, models: list[dict]) -> list[tuple[bytes, bytes]]:
    """(key, changelog value) of `orders` copies, spread over two months; no deadline pending, so
    that the worker at rest does nothing but answer."""
    rng = random.Random(3)
    out = []
    for n in range(orders):
        model = models[n % len(models)]
        shift = rng.randrange(60 * DAY) - 30 * DAY
        order = {**model, "order_id": f"B{n:08d}", "created_at": model["created_at"] + shift,
                 "paid_at": model["paid_at"] + shift if model.get("paid_at") else None,
                 "region": rng.choice(["UK", "US", "ID"]), "deadlines": {}}
        out.append((order["order_id"].encode(), orjson.dumps(order)))
    return out


async def produce(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send("orderflow-orders-changelog", value, key=key) for key, value in records]
        # Every partition's deadline index marked as holding every order's deadlines (they have none).
        for partition in range(common.PARTITIONS):
            futures.append(await producer.send("orderflow-deadlines-changelog", b"", key=b"~indexed",
                                               partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def timed(session: aiohttp.ClientSession, base: str, paths: list[str]) -> list[float]:
    seconds = []
    for path in paths:
        started = time.perf_counter()
        async with session.get(base + path) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
        seconds.append(time.perf_counter() - started)
    return seconds


async def deep_cursor(session: aiohttp.ClientSession, base: str, pages: int) -> str:
    path = "/orders?tab=To%20ship&limit=500"
    cursor = ""
    for _ in range(pages):
        async with session.get(base + path + (f"&cursor={cursor}" if cursor else "")) as response:
            cursor = (await response.json())["next_cursor"]
    return cursor


async def measure(base: str, ids: list[str], requests: int) -> None:
    rng = random.Random(9)
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/orders/counts") as response:
            to_ship = (await response.json())["tabs"]["To ship"]
        pages = max(1, min(20, to_ship // 1000))  # at most halfway down the tab
        cursor = await deep_cursor(session, base, pages)
        print(f"{to_ship:,} orders in the To ship tab", flush=True)
        rows = [
            ("baseline: GET /orders/{id}", [f"/orders/{rng.choice(ids)}" for _ in range(requests)]),
            ("GET /orders?tab=To ship&limit=50", ["/orders?tab=To%20ship&limit=50"] * requests),
            (f"  the same, {pages * 500:,} orders deep", [f"/orders?tab=To%20ship&limit=50&cursor={cursor}"] * requests),
            ("GET /orders/counts", ["/orders/counts"] * requests),
            ("GET /orders/counts?region=UK (reads orders)", ["/orders/counts?region=UK"] * max(3, requests // 20)),
        ]
        for label, paths in rows:
            await timed(session, base, paths[:3])  # warm
            seconds = await timed(session, base, paths)
            print(f"(h) {label:45s} p50 {percentile(seconds, 50) * 1000:8.1f} ms   "
                  f"p99 {percentile(seconds, 99) * 1000:8.1f} ms  ({len(seconds)} requests)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-api-"))
    models = templates()
    records = copies(args.orders, models)
    with common.broker(workdir) as bootstrap:
        started = time.monotonic()
        asyncio.run(produce(bootstrap, records))
        print(f"{args.orders:,} orders in the changelog in {time.monotonic() - started:.0f} s", flush=True)
        port = common.free_port()
        worker = common.start_worker(bootstrap, workdir / "worker", web_port=str(port))
        try:
            ready = common.wait_ready(workdir / "worker.log", timeout=3600)
            print(f"restored and listed by the worker in {ready:.0f} s", flush=True)
            ids = [key.decode() for key, _ in random.Random(1).sample(records, min(len(records), 10_000))]
            asyncio.run(measure(f"http://127.0.0.1:{port}", ids, args.requests))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(300)


if __name__ == "__main__":
    main()
