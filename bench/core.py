"""The lifecycle core alone, without Kafka or Faust, against plain JSON on the same events.

    python bench/core.py [--orders N] [--repeat R]

The simulated traffic of N orders (bench/common.py's) is replayed as `orderflow
replay` does (streams/book/replay.py): every event at its event time, deadlines
firing as the clock passes them, then the clock run on until every deadline
has fired.
(i)  the replay, orders kept as dicts;
(ii) the replay, orders kept encoded (tables/json_table.py), as the live worker
     keeps them in RocksDB: decoded on each read, encoded on each write.
Baseline in the same run: plain `json` encode and decode of each event and of
its order's final state, the least a worker does with them. Each figure is the
best of R runs (the machine is shared: the best run is the least disturbed).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable, Iterator, MutableMapping

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.lifecycle import Policy
from orderflow.tables.json_table import decode, encode

START = 1_795_000_000_000  # a fixed start: the same traffic, holidays included, every run
RUN_ON = 60 * 86_400_000  # past the last event, long enough for every deadline to fire


class EncodedOrders(MutableMapping[str, dict]):
    """Orders held as the live worker's table holds them: JSON bytes."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> dict:
        return decode(self.data[key])

    def __setitem__(self, key: str, value: dict) -> None:
        self.data[key] = encode(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def run_replay(events: list[dict], orders: MutableMapping[str, dict], policy: Policy) -> float:
    """Seconds to replay the events over this store of orders (emptied first)."""
    orders.clear()
    lines = [Line(n, event) for n, event in enumerate(events, 1)]
    until = events[-1]["event_time"] + RUN_ON
    started = time.perf_counter()
    for _ in replay(lines, until, policy, OrderBook(orders, policy)):
        pass
    return time.perf_counter() - started


def run_baseline(events: list[dict], orders: dict[str, dict]) -> float:
    """Seconds to encode and decode each event and its order's final state with plain json."""
    started = time.perf_counter()
    for event in events:
        json.loads(json.dumps(event))
        order = orders.get(event["order_id"])
        if order is not None:
            json.loads(json.dumps(order))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    events = list(Simulator(seed=7, start=START).events(args.orders))
    policy = Policy.load()
    for rules in policy.regions.values():  # load the holiday calendars now, as a worker does once
        rules.add_business_days(START, 1)
    total = len(events)
    print(f"{args.orders} orders, {total} events")

    def rate(run: Callable[[], float]) -> float:
        return total / min(run() for _ in range(args.repeat))

    orders: dict[str, dict] = {}  # after the replays, the final orders for the baseline
    replayed = rate(lambda: run_replay(events, orders, policy))
    encoded = rate(lambda: run_replay(events, EncodedOrders(), policy))
    baseline = rate(lambda: run_baseline(events, orders))
    print(f"baseline, plain json encode + decode of event and order: {baseline:10,.0f} events/s")
    print(f"(i)  core replay, orders as dicts:                       {replayed:10,.0f} events/s "
          f"({replayed / baseline:.2f} of the baseline)")
    print(f"(ii) core replay, orders stored encoded:                 {encoded:10,.0f} events/s "
          f"({encoded / baseline:.2f} of the baseline)")


if __name__ == "__main__":
    main()
