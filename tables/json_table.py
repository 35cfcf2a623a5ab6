"""A Faust table of bytes seen as a mapping of str keys to JSON-ready dicts (compact JSON values)."""
from __future__ import annotations

import json
from typing import Iterator, MutableMapping

import faust


def encode(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes) -> dict:
    return json.loads(data)


class JsonTable(MutableMapping[str, dict]):
    def __init__(self, table: faust.Table):
        self.table = table

    def __getitem__(self, key: str) -> dict:
        return decode(self.table[key.encode()])

    def get(self, key: str, default=None):
        data = self.table.get(key.encode())
        return default if data is None else decode(data)

    def __setitem__(self, key: str, value: dict) -> None:
        self.table[key.encode()] = encode(value)

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.table.keys())

    def __len__(self) -> int:
        return sum(1 for _ in self.table.keys())

    def items(self) -> Iterator[tuple[str, dict]]:
        return ((key.decode(), decode(value)) for key, value in self.table.items())
