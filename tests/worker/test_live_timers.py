"""The live path fires the same deadlines as a replay of the same traffic.

A worker runs on the embedded broker with an accelerated clock (one wall
second is four simulated hours). The test publishes each event when the
simulated clock reaches its event time, as the upstream platforms would, then
compares everything the worker published with a replay of the same events.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from support.live import WorkerProcess, read_outputs, run
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.config import Config
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.clock import AcceleratedClock, wall_ms
from support.orders import HOUR, cancel_request, created, delivered, failed, lines, paid, shipped, total, update
from support.reliability import final_tally

FACTOR = 14_400
POLICY_FILE = Path(__file__).parents[1] / "data" / "fast_policy.toml"
UNTIL = 100 * HOUR


def traffic(t0: int) -> list[tuple[int, dict]]:
    """(when it is published, event), in simulated time from t0."""
    def at(hours: float) -> int:
        return t0 + int(hours * HOUR)
    b_created = created("live-b", at(0))
    g_created = created("live-g", at(1))
    plan = [
        (0, created("live-a", at(0))),                                   # never paid
        (0, b_created), (2, paid("live-b", at(2))),                      # never shipped: late dispatch
        (0, created("live-c", at(0))), (2, paid("live-c", at(2))), (6, cancel_request("live-c", at(6))),
        (0, created("live-d", at(0))), (2, paid("live-d", at(2))), (8, shipped("live-d", at(8))),
        (12, update("live-d", at(12))), (20, failed("live-d", at(20))),  # no redelivery request
        (0, created("live-e", at(0))), (2, paid("live-e", at(2))), (8, shipped("live-e", at(8))),
        (20, delivered("live-e", at(20))),                               # never confirmed
        (0, created("live-f", at(0))), (52, paid("live-f", at(52))),     # pays after the auto-cancel
        (2, paid("live-g", at(2))), (2.1, g_created),                    # creation arrives after payment
        (0, created("live-h", at(0))), (1, shipped("live-h", at(1))),    # shipped while unpaid
        # Two packages: P1 delivered, P2 failed and never redelivered: given up after 3 days, the
        # order is delivered and (auto-confirm 3 days from P1's delivery) completed at once.
        (0, created("live-i", at(0), line_items=lines(2), total_amount=total(lines(2)))),
        (2, paid("live-i", at(2), "50.00")), (6, shipped("live-i", at(6), package_id="P1", line_ids=["1"])),
        (7, shipped("live-i", at(7), package_id="P2", line_ids=["2"])), (10, delivered("live-i", at(10), package_id="P1")),
        (12, failed("live-i", at(12), package_id="P2")),
        (3, dict(b_created)),                                            # a redelivered duplicate
    ]
    return sorted(((at(hours), event) for hours, event in plan), key=lambda item: item[0])


def test_live_worker_fires_the_same_deadlines_as_replay(own_broker, tmp_path):
    bootstrap = own_broker.bootstrap
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    # Simulated time starts once the worker is surely up (it takes a few seconds to join its group).
    clock = AcceleratedClock(FACTOR, wall_ms() + 12_000)
    worker = WorkerProcess(bootstrap, tmp_path / "worker", clock=clock.spec(), region_policy=str(POLICY_FILE))
    plan = traffic(clock.origin)
    policy = Policy.load(POLICY_FILE)
    expected = list(replay((Line(n, e) for n, (_, e) in enumerate(plan, 1)), clock.origin + UNTIL, policy))
    try:
        worker.wait_ready()
        assert wall_ms() < clock.origin, "the worker took too long to start for this plan"

        async def publish():
            async with Publisher(Config(broker=bootstrap)) as publisher:
                await publisher.send_raw(b"live-x", b"\x00 not an Avro message")
                for when, event in plan:
                    while clock.now() < when:
                        await asyncio.sleep(0.01)
                    await publisher.send_event(event)
                    await publisher.flush()
        run(publish())
        while clock.now() < clock.origin + UNTIL:
            run(asyncio.sleep(0.2))
        published = run(read_outputs(bootstrap, lambda seen: len(seen) >= len(expected) + 1, timeout=30))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    undecodable = [r for topic, r in published if topic == topics.DEAD_LETTERS.name and r["order_id"] is None]
    assert len(undecodable) == 1 and "undecodable" in undecodable[0]["reason"]
    assert undecodable[0]["payload"] == b"\x00 not an Avro message"

    live = {r["output_id"]: (topic, _comparable(topic, r)) for topic, r in published if r["order_id"] is not None}
    replayed = {}
    for output in expected:
        spec, record = messages.output_record(output)
        replayed[output["output_id"]] = (spec.name, _comparable(spec.name, record))
    assert live == replayed
    # Every rule of the plan showed up, so the comparison is not vacuous.
    kinds = {r.get("reason") or r.get("kind") for _, r in live.values()}
    assert {"PAYMENT_REMINDER_15M", "PAYMENT_REMINDER_16H", "UNPAID_TIMEOUT", "SHIP_BY_OVERDUE",
            "CANCEL_REQUEST_TIMEOUT", "REDELIVERY_WINDOW_EXPIRED", "LOGISTICS_FAILURE", "AUTO_CONFIRMED",
            "PAYMENT_AFTER_CANCEL"} <= kinds
    assert {"PARTIALLY_SHIPPING"} <= {r.get("to_status") for _, r in live.values()}
    # Each order's status changes came out in the same order as in the replay.
    assert _status_sequences(published) == _status_sequences(replayed.values())
    counts = final_tally(worker.log())
    assert counts["in"] == counts["applied"] + counts["dead_lettered"] + counts["duplicates"] + counts["buffered"]
    assert (counts["in"], counts["duplicates"]) == (len(plan) + 1, 1)


def _comparable(topic: str, record: dict) -> dict:
    """Dead letters carry transport details (offsets, payload bytes) that a replay has no way to know."""
    if topic == topics.DEAD_LETTERS.name:
        return {k: record[k] for k in ("order_id", "at", "reason")}
    return record


def _status_sequences(outputs) -> dict[str, list[str]]:
    sequences = defaultdict(list)
    for topic, record in outputs:
        if topic == topics.STATUS_CHANGES.name:
            sequences[record["order_id"]].append(record["output_id"])
    return dict(sequences)
