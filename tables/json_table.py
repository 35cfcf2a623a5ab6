"""A Faust table of bytes seen as a mapping of str keys to JSON-ready dicts (compact JSON values).

Reads and writes go to the batch of the partition being processed
(tables/direct.py: written to the changelog and RocksDB when the batch is
durable); iteration covers every partition this worker holds, through Faust.
"""
from __future__ import annotations

from typing import Iterator, MutableMapping

import faust
import orjson

from .direct import PartitionBatch, partition_db
from .listing import Listing


# Values hold strings, 64-bit integers (Avro's longs), booleans, nulls, lists and objects keyed by
# strings, never floats (no field of the schemas is one). For those orjson writes the very bytes of
# json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() and reads them back alike,
# several times faster: values stored before it came in decode as they did.
def encode(value: dict) -> bytes:
    return orjson.dumps(value)


def decode(data: bytes) -> dict:
    return orjson.loads(data)


class JsonTable(MutableMapping[str, dict]):
    """The mapping the core sees: reads and writes go to `batch` (the partition being processed,
    set by the worker); iteration and `lookup` cover every partition this worker holds."""

    def __init__(self, table: faust.Table, listed: bool = False):
        self.table = table
        self.batch: PartitionBatch | None = None
        self.listed = listed  # the values are orders, kept in their listing (tables/listing.py) too

    def open(self, partition: int) -> PartitionBatch:
        """A batch of writes to one partition, with the values decoded."""
        return PartitionBatch(self.table, partition, encode, decode, self.listing if self.listed else None)

    def listing(self, db) -> Listing:
        """The listing of a partition's database."""
        return Listing(db, self.table.data.offset_key)

    def __getitem__(self, key: str) -> dict:
        value = self.batch.get(key.encode())
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default=None):
        value = self.batch.get(key.encode())
        return default if value is None else value

    def lookup(self, key: str) -> dict | None:
        """The value in whichever partition this worker holds it (outside an agent: the order API)."""
        data = self.table.get(key.encode())
        return None if data is None else decode(data)

    def __setitem__(self, key: str, value: dict) -> None:
        self.batch.put(key.encode(), value)

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError when absent, as a mapping must
        self.batch.put(key.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.table.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.table.keys())

    def items(self) -> Iterator[tuple[str, dict]]:
        return ((key.decode(), decode(value)) for key, value in self.table.items())

    def partition_items(self, partition: int) -> Iterator[tuple[str, dict]]:
        """The stored orders of one partition (what is on disk, not a batch in progress)."""
        offset_key = self.table.data.offset_key
        return ((key.decode(), decode(value)) for key, value in partition_db(self.table, partition).items()
                if key != offset_key)
