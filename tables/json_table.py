"""A Faust table of bytes seen as a mapping of str keys to JSON-ready dicts (compact JSON values).

Reads and writes go to the partition being processed, straight to its RocksDB
(tables/direct.py: the agent sets the partition and sends the changelog
records); iteration covers every partition this worker holds, through Faust.
"""
from __future__ import annotations

from typing import Iterator, MutableMapping

import orjson

from .direct import PartitionWriter


# Values hold strings, 64-bit integers (Avro's longs), booleans, nulls, lists and objects keyed by
# strings, never floats (no field of the schemas is one). For those orjson writes the very bytes of
# json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() and reads them back alike,
# several times faster: values stored before it came in decode as they did.
def encode(value: dict) -> bytes:
    return orjson.dumps(value)


def decode(data: bytes) -> dict:
    return orjson.loads(data)


class JsonTable(MutableMapping[str, dict]):
    def __init__(self, writer: PartitionWriter):
        self.writer = writer

    def __getitem__(self, key: str) -> dict:
        data = self.writer.read(key.encode())
        if data is None:
            raise KeyError(key)
        return decode(data)

    def get(self, key: str, default=None):
        data = self.writer.read(key.encode())
        return default if data is None else decode(data)

    def lookup(self, key: str) -> dict | None:
        """The value in whichever partition this worker holds it (outside an agent: the order API)."""
        data = self.writer.table.get(key.encode())
        return None if data is None else decode(data)

    def __setitem__(self, key: str, value: dict) -> None:
        self.writer.write(key.encode(), encode(value))

    def __delitem__(self, key: str) -> None:
        self[key]  # KeyError when absent, as a mapping must
        self.writer.write(key.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.writer.table.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.writer.table.keys())

    def items(self) -> Iterator[tuple[str, dict]]:
        return ((key.decode(), decode(value)) for key, value in self.writer.table.items())
