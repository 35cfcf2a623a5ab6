"""One batch's writes to one partition of a Faust RocksDB table, held until the batch is durable.

Reads go through to the partition's RocksDB; writes stay in memory, decoded,
so a key written several times in a batch is encoded and sent once. The
worker's batch protocol (streams/worker/protocol.py) then sends `records()`
to the table's changelog and, once they are delivered, `store()` writes them
to RocksDB in one write batch together with the changelog offset Faust's
recovery starts from. Until then nothing of the batch is on disk.

Faust's RocksDB store keeps one database per partition but offers no public
way to reach it: `partition_db` is the one place that does (faust-streaming
0.15.3, pinned; tests/tables/test_direct_table.py fails if an upgrade changes it).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import faust
from rocksdict import WriteBatch


def partition_db(table: faust.Table, partition: int):
    """The RocksDB database (rocksdict, raw mode) of one partition of a Faust table."""
    return table.data._db_for_partition(partition)


def _same(value: Any) -> Any:
    return value


class Derived(Protocol):
    """What a table derives from its batch in the same RocksDB write (tables/listing.py)."""
    def write(self, changed: dict[bytes, Any], batch: WriteBatch, changelog_offset: int | None) -> None: ...


class PartitionBatch:
    def __init__(self, table: faust.Table, partition: int, encode: Callable[[Any], bytes] = _same,
                 decode: Callable[[bytes], Any] = _same, derived: Callable[[Any], Derived] | None = None):
        self.table = table
        self.partition = partition
        self.db = partition_db(table, partition)
        self._derived = derived
        self._encode, self._decode = encode, decode
        self.changed: dict[bytes, Any] = {}  # key -> value after the batch (None: deleted)
        # Keys whose records vouch for the rest of the batch (the order agent's read positions): the
        # batch protocol delivers them after every other record of the batch, of every table.
        self.closing: dict[bytes, Any] = {}

    def get(self, key: bytes) -> Any:
        if key in self.changed:
            return self.changed[key]
        data = self.db.get(key)
        return None if data is None else self._decode(data)

    def put(self, key: bytes, value: Any) -> None:
        """Put (or delete, with None) at the end of the batch."""
        self.changed[key] = value

    def stored_keys(self, start: bytes) -> Iterator[bytes]:
        """Keys on disk from `start` on, in order (writes of this batch not included)."""
        return self.db.keys(from_key=start)

    def put_closing(self, key: bytes, value: Any) -> None:
        self.closing[key] = value

    def records(self, closing: bool = False) -> list[tuple[bytes, bytes | None]]:
        """The changelog records of the batch (or of its closing keys): each key once, its last value."""
        changed = self.closing if closing else self.changed
        return [(key, None if value is None else self._encode(value)) for key, value in changed.items()]

    def store(self, records: list[tuple[bytes, bytes | None]], changelog_offset: int | None) -> None:
        """Write the records and the last changelog offset they were delivered at, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, data in records:
            if data is None:
                batch.delete(key)
            else:
                batch.put(key, data)
        if changelog_offset is not None:
            # Faust's own format (see Store.set_persisted_offset): recovery resumes after it.
            batch.put(self.table.data.offset_key, str(changelog_offset).encode())
        if self._derived is not None:
            self._derived(self.db).write(self.changed, batch, changelog_offset)
        self.db.write(batch)
        self.changed, self.closing = {}, {}
