"""The orders table: one RocksDB-backed, changelogged Faust table keyed by order id.

Values are the core's order dicts as compact JSON (tables.json_table). The table is co-partitioned
with order-events and the timer ticks, so an order is only ever written by the
worker that owns its partition.
"""
from __future__ import annotations

import faust

TABLE_NAME = "orders"

# RocksDB settings for every table: rocksdict (RocksDB 8) as the driver. Each
# partition of each table is its own database with its own cache and write
# buffers (Faust's defaults: a 2 GiB cache, 3 x 64 MiB buffers), so they are kept
# small: a worker's memory must not grow with the orders it keeps.
ROCKSDB_OPTIONS = {"driver": "rocksdict", "block_cache_size": 16 * 1024 * 1024,
                   "write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2}


def define_orders_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        # bytes in and out: the serializer is ours (raw keys, JSON values).
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Every order's state, deadlines and history, keyed by order_id.",
    )
