"""The orders table: one RocksDB-backed, changelogged Faust table keyed by order id.

Values are the core's order dicts as compact JSON. The table is co-partitioned
with order-events and the timer ticks, so an order is only ever written by the
worker that owns its partition.
"""
from __future__ import annotations

import json
from typing import Iterator, MutableMapping

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


def encode_order(order: dict) -> bytes:
    return json.dumps(order, separators=(",", ":"), ensure_ascii=False).encode()


def decode_order(data: bytes) -> dict:
    return json.loads(data)


class OrderTable(MutableMapping[str, dict]):
    """The orders table seen as a mapping of order id to order dict."""

    def __init__(self, table: faust.Table):
        self.table = table

    def __getitem__(self, order_id: str) -> dict:
        return decode_order(self.table[order_id.encode()])

    def get(self, order_id: str, default=None):
        data = self.table.get(order_id.encode())
        return default if data is None else decode_order(data)

    def __setitem__(self, order_id: str, order: dict) -> None:
        self.table[order_id.encode()] = encode_order(order)

    def __delitem__(self, order_id: str) -> None:
        del self.table[order_id.encode()]

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.table.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.table.keys())

    def items(self) -> Iterator[tuple[str, dict]]:
        return ((key.decode(), decode_order(value)) for key, value in self.table.items())
