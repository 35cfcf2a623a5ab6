"""Analytics on the real embedded broker: a worker (`orderflow run`, RocksDB on disk) publishes
the figures a replay of the same traffic computes, drops expired windows from RocksDB, counts
facts for them as too late, and `orderflow stats` reads the figures back from Kafka."""
from __future__ import annotations

import json

from click.testing import CliRunner
from rocksdict import AccessType, Options, Rdict

from support.live import WorkerProcess, read_outputs, run
from orderflow.streams.analytics.facts import Latest, replay_records
from orderflow.streams.book.replay import Line
from orderflow.streams.cli.commands import main
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.lifecycle import Policy
from orderflow.streams.worker.clock import wall_ms
from support.orders import DAY, HOUR, MIN, created, paid, seller_cancelled

POLICY = Policy.load()


def figures(records) -> dict:
    latest = Latest()
    for record in records:
        latest.add(record)
    return latest.windows()


def test_worker_publishes_the_replays_figures_and_expires_windows(own_broker, tmp_path, monkeypatch):
    bootstrap = own_broker.bootstrap
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    worker = WorkerProcess(bootstrap, tmp_path / "worker")
    now = wall_ms()
    old = now - 20 * DAY
    # Each order's events are sent together, so no deadline of theirs falls due between them.
    phases = [
        # Windows of 20 days ago: published, then dropped once the traffic of today passes them.
        [created("old-1", old), seller_cancelled("old-1", old + MIN)],
        # new-2 only once new-1's figures are out: their orders may sit on different partitions, and
        # new-2's facts, an hour later, would expire new-1's MINUTE windows if they came first.
        [created("new-1", now - 2 * HOUR), paid("new-1", now - 2 * HOUR + 5 * MIN)],
        [created("new-2", now - HOUR, shop_id="shop-2"), seller_cancelled("new-2", now - HOUR + MIN)],
        # Too late: their windows are gone. (Cancelled by the seller, or at 48 h if the worker's
        # clock for their partition is already today; too late either way.)
        [created("old-2", old + 2 * MIN), seller_cancelled("old-2", old + 3 * MIN)],
        # Sent once old-2 is cancelled, new-3's facts follow old-2's on both rows' partitions:
        # once its figures are out, old-2's facts were handled.
        [created("new-3", now - MIN)],
    ]
    sent: list[dict] = []
    try:
        worker.wait_ready()
        for phase in phases:
            sent += phase

            async def publish():
                async with Publisher(Config(broker=bootstrap)) as publisher:
                    for event in phase:
                        await publisher.send_event(event)
                    await publisher.flush()
            run(publish())
            if phase[0]["order_id"] == "old-2":
                run(read_outputs(bootstrap, lambda seen: any(r["order_id"] == "old-2" and r["to_status"] == "CANCELLED"
                                                             for _, r in seen), specs=(topics.STATUS_CHANGES,)))
                continue
            expected = figures(replay_records([Line(n, e) for n, e in enumerate(sent, 1)], now, POLICY))
            published = run(read_outputs(bootstrap, lambda seen: figures(r for _, r in seen) == expected,
                                         timeout=30, specs=(topics.ANALYTICS,)))
            assert figures(r for _, r in published) == expected
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    # By hand: old-1 alone on its day; new-1, new-2 and new-3 on today's (or yesterday's, near midnight).
    days = [metrics for row, metrics in expected.items() if (row.granularity, row.shop_id) == ("DAY", None)]
    assert days[0]["cancellations_by_reason"] == [("SELLER_CANCELLED", "1")]  # old-1, 20 days ago
    assert sum(int(m["orders_created"][0][1]) for m in days[1:]) == 3
    tally = [line for line in worker.log().splitlines() if "analytics facts in=" in line][-1]
    # 9 facts, each for a shop row and a region row; old-2's two facts too late on both.
    assert "in=18 applied=14 duplicates=0 too_late=4 undecodable=0" in tally, tally

    # RocksDB on disk: old-1's windows, SKU totals and seen ids are gone, today's are there.
    expiries = []
    for path in (tmp_path / "worker").rglob("analytics-*.db"):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        expiries += [int(key[:13]) for key in db.keys() if key[:13].isdigit()]
        db.close()
    assert expiries and min(expiries) > old + 5 * DAY

    # `orderflow stats` reads the same figures from Kafka as it computes from a replay.
    monkeypatch.chdir(tmp_path)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(event) + "\n" for event in sent))
    runner = CliRunner(env={"ORDERFLOW_BROKER": bootstrap, "ORDERFLOW_CONFIG": None})
    from_kafka = runner.invoke(main, ["stats", "--granularity", "HOUR"])
    from_replay = runner.invoke(main, ["stats", "--granularity", "HOUR", "--from-replay", str(events),
                                       "--until", str(now)])
    assert from_kafka.exit_code == 0 and from_replay.exit_code == 0, from_kafka.output + from_replay.output
    assert from_kafka.stdout == from_replay.stdout and "GB      all shops" in from_kafka.stdout
