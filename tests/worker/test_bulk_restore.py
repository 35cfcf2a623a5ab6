"""streams/worker/restore.py against the Faust internals it relies on (faust-streaming 0.15.3, pinned).

The bulk restore writes a partition's changelog in a table's `on_rebalance`;
that only spares Faust's own restore if Faust calls it before its recovery
reads the partition's persisted offset. These fail on an upgrade that
changes the order. (The restore itself runs in the live tests that wipe a
worker's state: tests/worker/test_timer_recovery.py, tests/worker/test_reliability.py.)
"""
from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from orderflow.streams.worker import restore
from orderflow.tables.orders import define_orders_table


def test_faust_reads_the_persisted_offset_after_the_tables_rebalance(tmp_path, monkeypatch):
    app = faust.App("bulk-restore-test", store="rocksdb://", datadir=str(tmp_path), broker="kafka://localhost:1")
    table = define_orders_table(app, 4)
    changelog = TP(table.changelog_topic.get_topic_name(), 1)
    monkeypatch.setattr(app.assignor, "assigned_standbys", lambda: set())
    monkeypatch.setattr(app.assignor, "assigned_actives", lambda: {changelog})

    async def read_changelog(table_, tps, reader):
        assert table_ is table and tps == [changelog]
        table.data.set_persisted_offset(changelog, 41)  # as the restore leaves it
        return 42
    monkeypatch.setattr(restore, "read_changelog", read_changelog)
    restore.restore_in_bulk(app, {"bootstrap_servers": "x"})

    seen = {}
    recovery_on_rebalance = app.tables.recovery.on_rebalance

    async def on_rebalance(*args, **kwargs):
        seen["offset"] = table.persisted_offset(changelog)  # the table's rebalance came first
        await recovery_on_rebalance(*args, **kwargs)
    monkeypatch.setattr(app.tables.recovery, "on_rebalance", on_rebalance)

    async def no_broker() -> None:  # it starts the tables' channels, which needs a broker
        pass
    monkeypatch.setattr(app.tables, "_update_channels", no_broker)
    app.consumer_generation_id = 0
    asyncio.run(app.tables.on_rebalance({changelog}, set(), {changelog}, 0))
    assert seen == {"offset": 41}
    # ... and the recovery starts from it: nothing left to read up to offset 41.
    assert app.tables.recovery.active_offsets[changelog] == 41
