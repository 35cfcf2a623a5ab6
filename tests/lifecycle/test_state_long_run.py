"""Months of simulated traffic through the core: what is kept levels off instead of growing with every order.

Sized for CI: 8 simulated months at 4 orders an hour (about 23,000 orders).
ORDERFLOW_LONG_RUN_ORDERS_PER_HOUR=200 plays the same months at the full size
(about 1.15 million orders; a few minutes).
"""
from __future__ import annotations

import os

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.simulator import Simulator
from orderflow.streams.lifecycle import Policy
from orderflow.streams.lifecycle.order import encoded_size
from orderflow.streams.stock.room import StockRoom
from support.orders import DAY, T0

POLICY = Policy.load()
MONTH = 30 * DAY
MONTHS = 8
ORDERS_PER_HOUR = float(os.environ.get("ORDERFLOW_LONG_RUN_ORDERS_PER_HOUR", "4"))


def month_ends():
    """What the tables hold at the end of each simulated month: (orders created, keys, bytes) per month."""
    simulator = Simulator(seed=11, start=T0, orders_per_hour=ORDERS_PER_HOUR, inventory=True)
    events = simulator.events(int(ORDERS_PER_HOUR * 24 * MONTH // DAY * MONTHS))
    orders, stock = {}, {}
    book, room = OrderBook(orders, POLICY), StockRoom(stock)
    created, samples, month, chunk = 0, [], 1, []

    def close_month():
        for _ in replay((Line(n, e) for n, e in enumerate(chunk, 1)), T0 + month * MONTH - 1, POLICY, book, room):
            pass
        chunk.clear()
        finished = sum(order["status"] in ("COMPLETED", "CANCELLED") for order in orders.values())
        samples.append({"created": created, "orders": len(orders), "finished": finished, "stock_keys": len(stock),
                        "bytes": sum(encoded_size(order) for order in orders.values())})

    for event in events:
        while event["event_time"] >= T0 + month * MONTH:
            close_month()
            month += 1
        chunk.append(event)
        created += event["event_type"] == "ORDER_CREATED"
    while month <= MONTHS:
        close_month()
        month += 1
    tally = book.tally
    assert tally["in"] == tally["applied"] + tally["dead_lettered"] + tally["duplicates"] + tally["buffered"]
    return samples


def test_kept_orders_stock_holds_and_bytes_level_off_over_months():
    samples = month_ends()
    for n, sample in enumerate(samples, 1):
        print(f"month {n}: {sample['created']:,} orders created, {sample['orders']:,} kept "
              f"({sample['finished']:,} finished), {sample['stock_keys']:,} stock keys, {sample['bytes']:,} bytes")
    # Retention (90 days, after a 15-day after-sales window for completed orders) is full by month 4;
    # after that what is kept follows the traffic of the last months, not every order ever made.
    full, last = samples[3], samples[-1]
    assert last["created"] > 1.9 * full["created"]
    for measure in ("orders", "stock_keys", "bytes"):
        assert last[measure] < 1.1 * full[measure], (measure, full, last)
    # Everything still kept was created within the retention period plus the windows before it.
    assert last["orders"] < 0.7 * last["created"]
