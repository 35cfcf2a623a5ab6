"""The orders table: one RocksDB-backed, changelogged Faust table keyed by order id.

Values are the core's order dicts as compact JSON (tables.json_table). The table is co-partitioned
with order-events and the timer ticks, so an order is only ever written by the
worker that owns its partition.
"""
from __future__ import annotations

import faust

TABLE_NAME = "orders"

# RocksDB settings: rocksdict (RocksDB 8) as the driver; a block cache sized for
# a worker that keeps about a million open orders.
ROCKSDB_OPTIONS = {"driver": "rocksdict", "block_cache_size": 64 * 1024 * 1024}


def define_orders_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        # bytes in and out: the serializer is ours (raw keys, JSON values).
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Every order's state, deadlines and history, keyed by order_id.",
    )
