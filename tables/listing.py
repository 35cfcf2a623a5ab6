"""The order listing: each partition's orders by status and sort value, in RocksDB beside them.

The seller centre lists a tab's orders a page at a time and counts every tab.
Scanning a partition's orders for that costs the partition; this index makes a
page cost the page and a count cost the statuses counted. It is a column
family ("listing") of each orders partition's own database, written in the
same RocksDB write batch as the orders (tables/direct.py, `store`), so the
orders and their listing are on disk together or not at all, whatever fails.

It is derived, not changelogged: Faust's own recovery (and the bulk restore)
writes orders without it. `~offset` holds the orders' changelog offset the
listing was last written with; while it differs from the offset Faust keeps,
the listing is behind: it is not used (`current`), not updated, and the worker
builds it anew from the orders before it serves the partition (`rebuild`).

Keys:
    o<order_id>                                   the order's listed values (JSON), to find its entries
    e<status>\\0<sort><presence><value><order_id>  one per sort: i (order id), c (created_at),
                                                  p (paid_at), a (total_amount), s (ship_by);
                                                  presence 0, or 1 for no value (listed last, by
                                                  order id)
    #<status>                                     how many orders have the status
    ~offset                                       the format, then the offset (see above)
Times are 8 bytes big-endian; an amount is its integral part in 8 bytes, then
its fractional digits without trailing zeros, then a zero byte, so that byte
order is value order. UTF-8 has no 0xff byte: `value + 0xff` is past every
order id of the value.
"""
from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Callable, Iterator

import orjson
from rocksdict import Options, Rdict, WriteBatch

from orderflow.streams.lifecycle.shipping import ship_by_time


FAMILY = "listing"
SORTS = {"order_id": b"i", "created_at": b"c", "paid_at": b"p", "total_amount": b"a", "ship_by": b"s"}
_OFFSET = b"~offset"
FORMAT = b"2"  # 2: with ship_by
_END = b"\xff"  # past every key
REBUILD_CHUNK = 1_000  # orders per write batch when building anew


def listed(order: dict | None) -> list | None:
    """What the listing keeps of an order: status then the sort values; None if it is not listed
    (gone, or events held for an order not created yet)."""
    if order is None or order.get("status") is None:
        return None
    return [order["status"], order.get("created_at"), order.get("paid_at"), order.get("total_amount"),
            ship_by_time(order)]


def _marker(offset: bytes | None) -> bytes:
    """`~offset`'s value: the format (a listing of another one is behind), then the orders' offset."""
    return FORMAT + b":" + (offset or b"")


def _value(sort: bytes, value) -> bytes:
    if sort == b"a":
        whole, _, fraction = format(Decimal(value), "f").partition(".")
        return int(whole).to_bytes(8, "big") + fraction.rstrip("0").encode() + b"\0"
    return value.to_bytes(8, "big")


def _parse_value(sort: bytes, data: bytes) -> tuple[object, bytes]:
    """The value at the front of `data` and what follows it (the order id)."""
    if sort == b"a":
        end = data.index(b"\0", 8)
        return Decimal(f"{int.from_bytes(data[:8], 'big')}.{data[8:end].decode() or '0'}"), data[end + 1:]
    return int.from_bytes(data[:8], "big"), data[8:]


def _prefix(status: str, sort: bytes) -> bytes:
    return b"e" + status.encode() + b"\0" + sort


def _entries(order_id: bytes, values: list) -> list[bytes]:
    status, created, paid, amount, ship_by = values
    keys = [_prefix(status, b"i") + b"0" + order_id]
    for sort, value in ((b"c", created), (b"p", paid), (b"a", amount), (b"s", ship_by)):
        keys.append(_prefix(status, sort) + (b"1" if value is None else b"0" + _value(sort, value)) + order_id)
    return keys


def _options() -> Options:
    # As small as the tables' own buffers (tables/orders.py): one family per partition.
    options = Options(raw_mode=True)
    options.set_write_buffer_size(4 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    return options


def _family(db: Rdict) -> Rdict:
    try:
        return db.get_column_family(FAMILY)
    except Exception:  # rocksdict names no exception type for a missing family
        return db.create_column_family(FAMILY, _options())


class Listing:
    """The listing of one partition's database (a Faust RocksDB store's, raw mode); `offset_key`
    is where Faust keeps the orders' changelog offset in it."""

    def __init__(self, db: Rdict, offset_key: bytes):
        self.db = db
        self.offset_key = offset_key
        self.family = _family(db)
        self.handle = db.get_column_family_handle(FAMILY)

    def current(self) -> bool:
        """Whether the listing holds every stored order as stored, in this version's format."""
        marker, offset = self.family.get(_OFFSET), self.db.get(self.offset_key)
        return marker == _marker(offset) or marker is offset is None  # or nothing was ever stored

    def count(self, status: str) -> int:
        return int(self.family.get(b"#" + status.encode()) or 0)

    # --- writing ---

    def write(self, changed: dict[bytes, dict | None], batch: WriteBatch, changelog_offset: int | None) -> None:
        """Add to `batch` (the orders' own write batch, which sets their changelog offset unless it
        is None) what `changed` (order id -> order, None: deleted) does to the listing, if it is
        current; otherwise leave it behind for `rebuild`."""
        if not self.current():
            return
        counts: dict[str, int] = {}
        for order_id, order in changed.items():
            self._move(order_id, listed(order), batch, counts)
        self._count(counts, batch)
        if changelog_offset is not None:
            batch.put(_OFFSET, _marker(str(changelog_offset).encode()), self.handle)

    def _move(self, order_id: bytes, values: list | None, batch: WriteBatch, counts: dict[str, int]) -> None:
        stored = self.family.get(b"o" + order_id)
        before = None if stored is None else orjson.loads(stored)
        if before == values:
            return
        if before is not None:
            for key in _entries(order_id, before):
                batch.delete(key, self.handle)
            counts[before[0]] = counts.get(before[0], 0) - 1
        if values is None:
            batch.delete(b"o" + order_id, self.handle)
            return
        for key in _entries(order_id, values):
            batch.put(key, b"", self.handle)
        batch.put(b"o" + order_id, orjson.dumps(values), self.handle)
        counts[values[0]] = counts.get(values[0], 0) + 1

    def _count(self, counts: dict[str, int], batch: WriteBatch) -> None:
        for status, change in counts.items():
            if change:
                batch.put(b"#" + status.encode(), str(self.count(status) + change).encode(), self.handle)

    def rebuild(self, decode: Callable[[bytes], dict]) -> Iterator[int]:
        """Build the listing anew from the stored orders (values read with `decode`), a write batch
        per REBUILD_CHUNK orders, yielding how many are listed after each: the caller may pause
        there. It lists the orders as they were when it began and is current only if nothing
        stored orders since (nothing should: the worker builds it before it serves the partition);
        cut short, it stays behind and is built anew."""
        offset = self.db.get(self.offset_key)
        stored = self.db.items()  # a RocksDB iterator sees the database as it is now, with `offset`
        cleared = WriteBatch(raw_mode=True)
        cleared.delete_range(b"", _END, self.handle)
        self.db.write(cleared)
        listed_so_far = 0
        orders = ((key, decode(value)) for key, value in stored if key != self.offset_key)
        while chunk := list(itertools.islice(orders, REBUILD_CHUNK)):
            batch, counts = WriteBatch(raw_mode=True), {}
            for order_id, order in chunk:
                self._move(order_id, listed(order), batch, counts)
            self._count(counts, batch)
            self.db.write(batch)
            listed_so_far += len(chunk)
            yield listed_so_far
        batch = WriteBatch(raw_mode=True)
        batch.put(_OFFSET, _marker(offset), self.handle)
        self.db.write(batch)

    # --- reading ---

    def walk(self, status: str, field: str, descending: bool = False,
             after: tuple | None = None) -> Iterator[tuple[object, str]]:
        """(sort value or None, order id) of the status's orders in listing order: by value
        (descending if asked), ties and no value (last) by order id; from just after `after`,
        a (value, order id) of this order. For the order-id sort the value is always None."""
        sort = SORTS[field]
        prefix = _prefix(status, sort)
        present, absent = prefix + b"0", prefix + b"1"
        if sort == b"i":
            start = present + (after[1].encode() + b"\0" if after else b"")
            yield from ((None, order_id.decode()) for order_id in self._keys(start, present, len(present)))
            return
        if after is None or after[0] is not None:
            yield from (self._descending if descending else self._ascending)(sort, present, after)
            after = None
        start = absent + (after[1].encode() + b"\0" if after else b"")
        yield from ((None, order_id.decode()) for order_id in self._keys(start, absent, len(absent)))

    def _keys(self, start: bytes, prefix: bytes, cut: int, backwards: bool = False) -> Iterator[bytes]:
        """The keys under `prefix` from `start` on (back down from it if `backwards`), less the
        first `cut` bytes."""
        for key in self.family.keys(from_key=start, backwards=backwards):
            if not key.startswith(prefix):
                return
            yield key[cut:]

    def _ascending(self, sort: bytes, present: bytes, after: tuple | None):
        start = present + (_value(sort, after[0]) + after[1].encode() + b"\0" if after else b"")
        for rest in self._keys(start, present, len(present)):
            value, order_id = _parse_value(sort, rest)
            yield value, order_id.decode()

    def _descending(self, sort: bytes, present: bytes, after: tuple | None):
        # Stored ascending: find each value's run reading backwards, then read the run forwards,
        # by order id (so no run is held in memory, however many orders share a value).
        below = present + (_value(sort, after[0]) + _END if after else _END)  # every key read is below it
        while (last := next((key for key in self._keys(below, present, 0, backwards=True) if key < below),
                            None)) is not None:
            value, _ = _parse_value(sort, last[len(present):])
            run = present + _value(sort, value)
            resume = after is not None and value == after[0]
            for order_id in self._keys(run + (after[1].encode() + b"\0" if resume else b""), run, len(run)):
                yield value, order_id.decode()
            below = run  # at or below every key of the run: the run before it is next

