"""Analytics throughput: the live analytics agent against the pure aggregator on the same facts.

    python bench/analytics.py [--orders N]

The facts of N simulated orders (each sent twice, once per row) are published
to orderflow-analytics-facts on the embedded broker before a worker starts;
once the worker is ready, the time until its group committed every fact is
measured. Baselines in the same run: the pure aggregator over an in-memory
store, one fact at a time (what `stats --from-replay` does) and in batches.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import mock

import common
from orderflow.streams.analytics.facts import Aggregator, MemoryStore, facts, row_key, rows, zones
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.clock import wall_ms


def fact_copies(orders: int, start: int, policy: Policy, per_hour: float) -> list[dict]:
    """Every row's copy of every fact of the simulated orders, in the order the worker would queue them."""
    book = OrderBook({}, policy)
    copies: list[dict] = []
    book.observers.append(lambda before, after, outputs: copies.extend(
        copy for fact in facts(before, after, outputs) for copy in rows(fact)))
    events = [Line(n, event) for n, event in enumerate(Simulator(seed=7, start=start, orders_per_hour=per_hour).events(orders), 1)]
    for _ in replay(events, wall_ms(), policy, book):
        pass
    return copies


def pure(copies: list[dict], policy: Policy, batch: int) -> float:
    aggregator = Aggregator(MemoryStore(), zones(policy))
    started = time.perf_counter()
    if batch == 1:
        for copy in copies:
            aggregator.add(copy)
    else:
        for n in range(0, len(copies), batch):
            aggregator.add_many(copies[n:n + batch])
    return len(copies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--orders-per-hour", type=float, default=600.0,
                        help="simulated order rate (600: the simulator's default; a live feed at thousands "
                             "of facts/s is some 1,000,000)")
    parser.add_argument("--profile", metavar="FILE", help="run the worker under cProfile, stats to FILE")
    args = parser.parse_args()
    policy = Policy.load()
    workdir = Path(tempfile.mkdtemp(prefix="orderflow-bench-analytics-"))
    copies = fact_copies(args.orders, wall_ms() - 2 * 86_400_000, policy, args.orders_per_hour)
    total = len(copies)
    print(f"{args.orders} orders at {args.orders_per_hour:,.0f}/h, {total} fact copies; work dir {workdir}")
    print(f"(a) pure aggregator, one fact at a time: {pure(copies, policy, 1):10,.0f} facts/s")
    if hasattr(Aggregator, "add_many"):
        print(f"(b) pure aggregator, batches of 500:     {pure(copies, policy, 500):10,.0f} facts/s")
    codec = codec_for_topic(topics.ANALYTICS_FACTS)
    # One message per fact copy: the worst case (the order agent sends one per row per batch).
    records = [(row_key(copy), codec.encode({"facts": [copy]})) for copy in copies]
    with common.broker(workdir) as bootstrap:
        asyncio.run(common.publish(bootstrap, topics.ANALYTICS_FACTS.name, records))
        if args.profile:  # the same worker as common.start_worker, under cProfile
            popen = subprocess.Popen

            def profiled(argv, **kwargs):
                return popen([argv[0], "-m", "cProfile", "-o", args.profile, *argv[1:]], **kwargs)
            with mock.patch.object(common.subprocess, "Popen", profiled):
                worker = common.start_worker(bootstrap, workdir / "worker")
        else:
            worker = common.start_worker(bootstrap, workdir / "worker")
        try:
            common.wait_ready(workdir / "worker.log")
            seconds = common.wait_consumed(bootstrap, "orderflow", topics.ANALYTICS_FACTS.name, total, timeout=1800)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    log = (workdir / "worker.log").read_text(errors="replace")
    tallies = [line for line in log.splitlines() if "analytics facts in=" in line]
    print(f"(c) live analytics agent, one worker:    {total / seconds:10,.0f} facts/s "
          f"({total} in {seconds:.1f} s after the worker was ready; offsets are committed every few seconds)")
    print("    " + (tallies[-1].split("analytics ", 1)[-1] if tallies else "no tally logged"))


if __name__ == "__main__":
    main()
