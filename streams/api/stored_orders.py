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


class StoredOrders:
    """The orders of the partitions `partitions()` names, in `orders`' RocksDB databases."""

    def __init__(self, orders: JsonTable, partitions: Callable[[], Iterable[int]]):
        self.orders = orders
        self.table: faust.Table = orders.table
        self.partitions = partitions

    async def page(self, query: Query, pause: Pause) -> list[dict]:
        """This worker's orders of the query's page in its order, plus one if another page follows."""
        sources = []
        for number in self.partitions():
            listing = self.orders.listing(partition_db(self.table, number))
            if listing.current():
                sources.append(self._walk(listing, query))
            else:
                sources.append(iter(await self._scan(number, query, pause)))
        return await _first(heapq.merge(*sources, key=query.key), query.accepts, query.limit + 1, pause)

    async def statuses(self, filters: Filters, pause: Pause) -> Counter:
        """How many of this worker's orders that pass `filters` are in each status."""
        statuses: Counter = Counter()
        wanted = filters.statuses or st.STATUSES
        for number in self.partitions():
            listing = self.orders.listing(partition_db(self.table, number))
            if listing.current() and filters.by_status_only:
                statuses.update({status: listing.count(status) for status in wanted})
                continue
            if listing.current():
                walks = (listing.walk(status, "order_id") for status in wanted)
                orders = self._read(listing, itertools.chain.from_iterable(walks))
            else:
                orders = self._stored(number)
            async for chunk in _chunks(orders, pause):
                statuses.update(order["status"] for order in chunk if filters.accepts(order))
        return +statuses

    def _walk(self, listing: Listing, query: Query) -> Iterator[dict]:
        """The partition's orders of the query's statuses, in its order, from after its cursor."""
        after = query.after_value
        walks = [listing.walk(status, query.field, query.descending, after)
                 for status in query.filters.statuses or st.STATUSES]
        merged = heapq.merge(*walks, key=lambda item: query.key_of(*item))
        return self._read(listing, merged)

    @staticmethod
    def _read(listing: Listing, listed: Iterable[tuple[object, str]]) -> Iterator[dict]:
        for _, order_id in listed:
            data = listing.db.get(order_id.encode())
            if data is not None:
                yield decode(data)

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
