"""The vertical slice on the real embedded broker: created then paid, in a RocksDB table."""
from __future__ import annotations

import json

from rocksdict import AccessType, Options, Rdict

from support.live import WorkerProcess, read_outputs, run
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import ensure_topics
from orderflow.streams.kafka.publish import Publisher
from orderflow.streams.worker.clock import wall_ms
from support.orders import MIN, created, paid


def test_created_then_paid_reaches_awaiting_shipment_in_rocksdb_and_both_changes_are_published(own_broker, tmp_path):
    bootstrap = own_broker.bootstrap
    config = Config(broker=bootstrap)
    run(ensure_topics({"bootstrap_servers": bootstrap}, topics.ALL_TOPICS, 4, 1))
    worker = WorkerProcess(bootstrap, tmp_path / "worker")
    try:
        worker.wait_ready()
        now = wall_ms()

        async def publish():
            async with Publisher(config) as publisher:
                await publisher.send_event(created("slice-1", now - 2 * MIN))
                await publisher.send_event(paid("slice-1", now - MIN))
                await publisher.flush()
        run(publish())
        outputs = run(read_outputs(bootstrap, lambda seen: len(seen) >= 2, timeout=30))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    changes = [r for topic, r in outputs if topic == topics.STATUS_CHANGES.name]
    assert [(c["from_status"], c["to_status"], c["reason"]) for c in changes] == [
        (None, "UNPAID", "CREATED"), ("UNPAID", "AWAITING_SHIPMENT", "PAID")]
    assert all(c["order_id"] == "slice-1" for c in changes)
    # Paid two minutes after creation by event time: the 15-minute reminder never fired.
    assert [r for topic, r in outputs if topic == topics.REMINDERS.name] == []

    # The order's state is in the worker's RocksDB files, not just in memory.
    stored = []
    for path in (tmp_path / "worker").rglob("orders-*.db"):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        value = db.get(b"slice-1")
        db.close()
        if value is not None:
            stored.append(json.loads(value))
    assert len(stored) == 1 and stored[0]["status"] == "AWAITING_SHIPMENT"
    assert "SHIP_BY" in stored[0]["deadlines"]
