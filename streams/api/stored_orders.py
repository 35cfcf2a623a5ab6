"""This worker's share of an order query: its active partitions, read through their listing.

A page walks each partition's listing (tables/listing.py) of the statuses the
query asks for, in the query's sort order, and reads the orders it lists one
by one until the page is full: it costs the page, plus the listed orders
the other filters reject. Counts by status alone are the listing's counters;
other filters walk the orders of the statuses asked for. A partition whose
listing is behind (the worker is still building it after a restore) is
scanned whole, as a partition with no listing would be.

Every SCAN_CHUNK orders read, the work yields to the event loop (which also
runs the agents) through `pause`, which also stops it when the client left.
"""
from __future__ import annotations

import heapq
import itertools
from collections import Counter
from typing import Awaitable, Callable, Iterable, Iterator

import faust

from orderflow.tables.direct import partition_db
from orderflow.tables.json_table import JsonTable, decode
from orderflow.tables.listing import Listing

from orderflow.streams.api.order_query import Filters, Query
from orderflow.streams.lifecycle import status as st

# Orders read between two yields to the event loop, so that no request holds up the agents or the
# consumer's heartbeats for long.
SCAN_CHUNK = 1000

Pause = Callable[[], Awaitable[None]]


class PartitionsMoved(Exception):
    """A partition being read left this worker mid-request: the request may be asked again."""


def _statuses(filters: Filters) -> tuple[str, ...]:
    """The statuses to read: those the filters allow (none, for a tab and a status that exclude each other)."""
    return st.STATUSES if filters.statuses is None else filters.statuses


class StoredOrders:
    """The orders of the partitions `partitions()` names, in `orders`' RocksDB databases."""

    def __init__(self, orders: JsonTable, partitions: Callable[[], Iterable[int]]):
        self.orders = orders
        self.table: faust.Table = orders.table
        self.partitions = partitions

    def _open(self, pause: Pause) -> tuple[list[int], Pause]:
        """The partitions to read, and a pause that stops the work once one of them left this
        worker (its database must not be held open while it may come back: Faust reopens it)."""
        numbers = list(self.partitions())

        async def pause_here() -> None:
            await pause()
            if not set(numbers) <= set(self.partitions()):
                raise PartitionsMoved()
        return numbers, pause_here

    async def page(self, query: Query, pause: Pause) -> list[dict]:
        """This worker's orders of the query's page in its order, plus one if another page follows."""
        numbers, pause = self._open(pause)
        sources = []
        for number in numbers:
            listing = self.orders.listing(partition_db(self.table, number))
            if listing.current():
                sources.append(self._walk(listing, query))
            else:
                sources.append(iter(await self._scan(number, query, pause)))
        return await _first(heapq.merge(*sources, key=query.key), query.accepts, query.limit + 1, pause)

    async def statuses(self, filters: Filters, pause: Pause) -> Counter:
        """How many of this worker's orders that pass `filters` are in each status."""
        numbers, pause = self._open(pause)
        statuses: Counter = Counter()
        wanted = _statuses(filters)
        for number in numbers:
            listing = self.orders.listing(partition_db(self.table, number))
            current = listing.current()
            if current and filters.by_status_only:
                statuses.update({status: listing.count(status) for status in wanted})
                continue
            if current:
                orders = itertools.chain.from_iterable(
                    self._read(listing, status, listing.walk(status, "order_id"), lambda *_: True) for status in wanted)
            else:
                orders = self._stored(number)
            async for chunk in _chunks(orders, pause):
                statuses.update(order["status"] for order in chunk if filters.accepts(order))
        return +statuses

    def _walk(self, listing: Listing, query: Query) -> Iterator[dict]:
        """The partition's orders of the query's statuses, in its order, from after its cursor."""
        after = query.after_value

        def in_place(order: dict, value, order_id: str) -> bool:
            return query.key(order) == query.key_of(value, order_id)
        return heapq.merge(*(self._read(listing, status, listing.walk(status, query.field, query.descending, after),
                                        in_place) for status in _statuses(query.filters)), key=query.key)

    @staticmethod
    def _read(listing: Listing, status: str, listed: Iterable[tuple[object, str]],
              in_place: Callable[[dict, object, str], bool]) -> Iterator[dict]:
        """The orders the listing names under `status`, read as they are now: one that a batch moved
        since the walk began is not where its entry says any more, and is left to its new entry, so
        that no order comes twice and each comes in its place."""
        for value, order_id in listed:
            data = listing.db.get(order_id.encode())
            if data is None:
                continue
            order = decode(data)
            if order.get("status") == status and in_place(order, value, order_id):
                yield order

    def _stored(self, number: int) -> Iterator[dict]:
        return (order for _, order in self.orders.partition_items(number))

    async def _scan(self, number: int, query: Query, pause: Pause) -> list[dict]:
        best: list[dict] = []
        async for chunk in _chunks(self._stored(number), pause):
            best = query.select(itertools.chain(best, chunk))
        return best


async def _chunks(items: Iterable, pause: Pause):
    it = iter(items)
    while chunk := list(itertools.islice(it, SCAN_CHUNK)):
        yield chunk
        await pause()


async def _first(items: Iterable[dict], accept: Callable[[dict], bool], count: int, pause: Pause) -> list[dict]:
    """The first `count` accepted items; reading them is the cost, paused over rejected ones too."""
    taken: list[dict] = []
    for read, item in enumerate(items, 1):
        if accept(item):
            taken.append(item)
            if len(taken) == count:
                break
        if read % SCAN_CHUNK == 0:
            await pause()
    return taken
