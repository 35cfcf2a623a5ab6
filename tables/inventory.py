"""The inventory table: SKUs and their order lines' holds (streams/stock/room.py), keyed by SKU first.

Every key of a SKU is written while its partition of inventory-events and
orderflow-stock-requests is processed, so it lives in that partition's RocksDB
and changelog, as Faust requires.
"""
from __future__ import annotations

import faust

from .orders import ROCKSDB_OPTIONS

TABLE_NAME = "inventory"


def define_inventory_table(app: faust.App, partitions: int) -> faust.Table:
    return app.Table(
        TABLE_NAME, partitions=partitions, key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS),
        help="Units on hand, held and catalogue prices per SKU; each order line's hold.",
    )
