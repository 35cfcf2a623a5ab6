"""Order confirmation on the embedded broker: two workers, orders keyed by order id, inventory by SKU.

Requests go from the order agent to the SKU's partition of the inventory agent
and answers come back by order id, through topics keyed each way; whichever
worker owns what, the last unit goes to one order only, also with duplicated
events and a worker killed and restarted in the middle. Outputs, orders and
the inventory table end as a replay of the same input leaves them.
"""
from __future__ import annotations

import asyncio
import signal
import time

from support.live import WorkerProcess, run
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.worker.clock import wall_ms
from support.orders import HOUR, MIN, ordered, paid, price_changed, seller_cancelled, shipped, stock_set
from support.reliability import (OutputLog, assert_orders_match, committed_offsets, compare_outputs,
                                 expected_from_replay, frozen_clock, latest_state, report, rocksdb_copies)

RACERS = 6


async def publish(bootstrap: str, events: list[dict]) -> None:
    async with Publisher(Config(broker=bootstrap)) as publisher:
        for event in events:
            await publisher.send_event(event)
        await publisher.flush()


async def inventory_applied(bootstrap: str, count: int, timeout: float = 60) -> None:
    """Until the workers committed `count` warehouse events (so later requests find the stock)."""
    deadline = time.monotonic() + timeout
    while sum((await committed_offsets(bootstrap, range(4), topics.INVENTORY_EVENTS.name)).values()) < count:
        assert time.monotonic() < deadline, "the warehouse events were not taken in time"
        await asyncio.sleep(0.2)


def test_two_workers_reserve_release_consume_and_give_the_last_unit_to_one_order(own_broker, tmp_path,
                                                                                 record_property):
    started = time.monotonic()
    bootstrap = own_broker.bootstrap
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    origin = wall_ms()
    t0 = origin - HOUR
    stock = [stock_set("sku-last", t0, 1), stock_set("sku-plenty", t0, 10),
             price_changed("sku-plenty", t0, "9.99"), price_changed("sku-plenty", t0 + 2 * MIN, "12.00")]
    # The first racer pays alone, before the others exist: the replay's winner is then certain.
    first = [ordered("race-0", "sku-last", 1, t0 + MIN), paid("race-0", t0 + 3 * MIN),
             ordered("rel-1", "sku-plenty", 4, t0 + MIN), paid("rel-1", t0 + 3 * MIN),
             ordered("ship-1", "sku-plenty", 3, t0 + MIN), paid("ship-1", t0 + 3 * MIN),
             ordered("pm-1", "sku-plenty", 1, t0 + 3 * MIN, "9.99"), paid("pm-1", t0 + 4 * MIN)]
    racers = [e for n in range(1, RACERS) for e in (ordered(f"race-{n}", "sku-last", 1, t0 + 5 * MIN),
                                                    paid(f"race-{n}", t0 + 6 * MIN))]
    second = racers + [seller_cancelled("rel-1", t0 + 7 * MIN), shipped("ship-1", t0 + 7 * MIN)]
    copies = [dict(e) for e in first + second if e["event_type"] == "ORDER_PAID"]  # redelivered upstream
    events = stock + first + second + copies
    expected = expected_from_replay(events, origin)
    # And a true race: two orders (on different partitions, whichever worker has them) pay for one unit at
    # once. Either may win, so the replay is no judge of these two: exactly one must get the unit.
    duo_stock = [stock_set("sku-duo", t0, 1)]
    duo = [e for order_id in ("duo-a", "duo-b") for e in (ordered(order_id, "sku-duo", 1, t0 + 5 * MIN),
                                                          paid(order_id, t0 + 6 * MIN))]
    clock = frozen_clock(origin)

    async def scenario() -> dict:
        figures = {}
        a = WorkerProcess(bootstrap, tmp_path / "a", clock=clock)
        b = WorkerProcess(bootstrap, tmp_path / "b", clock=clock)
        restarted = None
        try:
            await asyncio.gather(asyncio.to_thread(a.wait_ready, 120), asyncio.to_thread(b.wait_ready, 120))
            async with OutputLog(bootstrap) as log:
                await publish(bootstrap, stock + duo_stock)
                await inventory_applied(bootstrap, len(stock + duo_stock))
                await publish(bootstrap, first)
                changes = lambda out: {r["order_id"] for t, r in out.pairs() if r.get("to_status") == "AWAITING_SHIPMENT"}
                assert await log.wait(lambda out: len(changes(out)) == 4, 60), log.pairs()
                # kill -9 one worker; its replacement takes over from its RocksDB and the changelog.
                b.process.send_signal(signal.SIGKILL)
                b.process.wait(30)
                b.stop()
                restarted = WorkerProcess(bootstrap, tmp_path / "b", clock=clock)
                await asyncio.to_thread(restarted.wait_ready, 120)
                await publish(bootstrap, duo + second + copies)
                everything = lambda out: set(expected.outputs) <= {r["output_id"] for _, r in out.pairs()} and \
                    {r["order_id"] for _, r in out.pairs() if r.get("kind") == "OUT_OF_STOCK"} & {"duo-a", "duo-b"}
                figures["all_outputs"] = await log.wait(everything, 120)
                await log.quiet(3.0)
                figures["pairs"] = log.pairs()
        finally:
            figures["rc"] = [w.stop() for w in (a, restarted) if w is not None]
        return figures

    figures = run(scenario())
    published = figures.pop("pairs")
    raced = [r for _, r in published if r["order_id"] in ("duo-a", "duo-b")]
    comparison = compare_outputs([(t, r) for t, r in published if r not in raced], expected)
    out_of_stock = sorted({r["order_id"] for t, r in published if r.get("kind") == "OUT_OF_STOCK"} - {"duo-a", "duo-b"})
    duo_short = sorted({r["order_id"] for r in raced if r.get("kind") == "OUT_OF_STOCK"})
    mismatched = sorted({r["order_id"] for t, r in published if r.get("kind") == "PRICE_MISMATCH"})
    inventory, _ = latest_state(rocksdb_copies([tmp_path / "a", tmp_path / "b"], table="inventory"))
    orders, _ = latest_state(rocksdb_copies([tmp_path / "a", tmp_path / "b"]))
    duo_sku = inventory.pop("sku|sku-duo", None)
    duo_holds = {key: inventory.pop(key) for key in [k for k in inventory if k.startswith("hold|sku-duo|")]}
    duo_orders = {order_id: orders.pop(order_id, None) for order_id in ("duo-a", "duo-b")}
    line = report(record_property, "inventory_live", {
        "events": len(events), **comparison.figures(), "out_of_stock": out_of_stock, "price_mismatch": mismatched,
        "sku_last": inventory.get("sku|sku-last"), "sku_plenty": inventory.get("sku|sku-plenty"),
        "duo_out_of_stock": duo_short, "sku_duo": duo_sku,
        "rc": figures["rc"], "seconds": round(time.monotonic() - started, 1)})

    assert figures["rc"] == [0, 0], line
    # The last unit went to the order that paid first; every other racer got OUT_OF_STOCK, once each.
    assert out_of_stock == [f"race-{n}" for n in range(1, RACERS)], line
    assert mismatched == ["pm-1"], line
    # The true race: one winner holds the unit, the other has the alert and the open condition.
    assert len(duo_short) == 1 and (duo_sku["on_hand"], duo_sku["held"]) == (1, 1), line
    winner = ({"duo-a", "duo-b"} - set(duo_short)).pop()
    assert sorted((k.split("|")[2], h["reserved"]) for k, h in duo_holds.items()) == sorted(
        [(winner, True), (duo_short[0], False)]), line
    assert "OUT_OF_STOCK" in duo_orders[duo_short[0]]["conditions"] and not duo_orders[winner]["conditions"], line
    assert not (comparison.missing or comparison.unexpected or comparison.differing or comparison.conflicting), (
        f"{comparison}\n{line}")
    # Nothing oversold: one unit held of one; released (rel-1) and consumed (ship-1) units are right.
    assert (inventory["sku|sku-last"]["on_hand"], inventory["sku|sku-last"]["held"]) == (1, 1), line
    assert (inventory["sku|sku-plenty"]["on_hand"], inventory["sku|sku-plenty"]["held"]) == (7, 1), line
    assert inventory == expected.inventory, line
    assert orders["race-1"]["conditions"]["OUT_OF_STOCK"]["lines"]["0"]["available"] == 0, line
    assert_orders_match(orders, expected, line)
