"""The order listing (tables/listing.py) in real RocksDB, against the plain scan it replaces.

Every page and count read through the listing must be what order_query's scan
of the same orders gives (the reference), through updates, deletions, status
moves, equal sort values and missing ones; a partition stored without its
listing (as Faust's recovery stores it) must be read whole until it is built
anew, and read the same after.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter

import faust
import pytest

from orderflow.tables.direct import PartitionBatch, partition_db
from orderflow.tables.json_table import JsonTable, decode, encode
from orderflow.tables.orders import define_orders_table

from orderflow.streams.api.order_query import SORTS, Filters, Query
from orderflow.streams.api.stored_orders import StoredOrders
from orderflow.streams.lifecycle import status as st

PARTITIONS = 3
T0 = 1_700_000_000_000
HOUR = 3_600_000


def _orders_table(tmp_path, name="listing-test"):
    app = faust.App(name, store="rocksdb://", datadir=str(tmp_path), broker="kafka://localhost:1")
    return JsonTable(define_orders_table(app, PARTITIONS), listed=True)


def _order(rng: random.Random, order_id: str) -> dict:
    status = rng.choice(st.STATUSES + (None,))  # None: events held for an order not created yet
    deadlines, conditions = {}, {}
    if status == "AWAITING_SHIPMENT":  # ship-by pending, or fired (late dispatch since then)
        due = T0 + rng.randrange(-3, 4) * HOUR * 12
        if rng.random() < 0.3:
            conditions["LATE_DISPATCH"] = {"since": due}
        else:
            deadlines["SHIP_BY"] = due
        if rng.random() < 0.3:
            conditions["CANCEL_REQUESTED"] = {}
            deadlines["CANCEL_REQUEST_TIMEOUT"] = T0 + rng.randrange(0, 4) * HOUR * 12
    if status == "UNPAID":
        deadlines["UNPAID_TIMEOUT"] = T0 + rng.randrange(0, 4) * HOUR * 12
    if status == "IN_TRANSIT" and rng.random() < 0.5:
        conditions["DELIVERY_FAILED"] = rng.choice([{}, {"redelivery_requested_at": T0}])
    return {"order_id": order_id, "status": status,
            "created_at": T0 + rng.randrange(50) * 60_000,  # few distinct times: many ties
            "paid_at": rng.choice([None, T0 + rng.randrange(20) * 60_000]),
            "total_amount": rng.choice(["0", "9.9", "9.90", "10", "10.05", "123.456", "1000000000000", "0.5"]),
            "region": rng.choice(["UK", "US"]), "shop_id": rng.choice(["s1", "s2", "s3"]),
            "deadlines": deadlines, "conditions": conditions}


def _store(table: JsonTable, rng: random.Random, batches: int, listed: bool = True) -> None:
    """Random batches of new, changed and deleted orders, stored as the batch protocol stores them
    (order o-N lives in partition N % PARTITIONS, as the key decides in Kafka)."""
    for _ in range(batches):
        number = rng.randrange(PARTITIONS)
        batch = table.open(number) if listed else PartitionBatch(table.table, number, encode, decode)
        for _ in range(rng.randrange(1, 40)):
            order_id = f"o-{rng.randrange(150) * PARTITIONS + number:03d}"
            if batch.get(order_id.encode()) is not None and rng.random() < 0.15:
                batch.put(order_id.encode(), None)
            else:
                batch.put(order_id.encode(), _order(rng, order_id))
        offset = int(partition_db(table.table, number).get(table.table.data.offset_key) or 0)
        batch.store(batch.records(), offset + 50)


async def _no_pause() -> None:
    return None


def _all_pages(stored: StoredOrders, params: dict) -> list[str]:
    """Every page of the query in turn, through the listing (the worker's side of a page)."""
    query, seen = Query.parse(params), []
    while True:
        candidates = asyncio.run(stored.page(query, _no_pause))
        shown, cursor = query.page(candidates)
        seen += [order["order_id"] for order in shown]
        if cursor is None:
            return seen
        query = query.resume(cursor)


def _reference(orders: list[dict], params: dict) -> list[str]:
    query = Query.parse(params)
    return [order["order_id"] for order in sorted(filter(query.accepts, orders), key=query.key)]


def _stored_orders(table: JsonTable) -> list[dict]:
    return [order for n in range(PARTITIONS) for _, order in table.partition_items(n)]


QUERIES = [{"sort": sort, "limit": str(limit), **extra}
           for sort in SORTS for limit in (1, 7, 50)
           for extra in ({}, {"tab": "To ship"}, {"status": "UNPAID,CANCELLED"}, {"region": "UK"},
                         {"tab": "Shipped", "shop_id": "s2"}, {"due": "overdue", "now": str(T0)},
                         {"due": "ship_within_24h,auto_cancel_within_24h", "now": str(T0)},
                         {"action_needed": "1"})]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_page_through_the_listing_is_the_scan_s_page(tmp_path, seed):
    rng = random.Random(seed)
    table = _orders_table(tmp_path)
    _store(table, rng, batches=60)
    orders = _stored_orders(table)
    stored = StoredOrders(table, lambda: range(PARTITIONS))
    assert all(table.listing(partition_db(table.table, n)).current() for n in range(PARTITIONS))
    for params in QUERIES:
        assert _all_pages(stored, params) == _reference(orders, params), params


@pytest.mark.parametrize("params", [{}, {"tab": "To ship"}, {"region": "UK"}, {"status": "CANCELLED", "shop_id": "s1"},
                                    {"created_from": "2023-11-14T22:30:00Z"}])
def test_counts_through_the_listing_are_the_scan_s_counts(tmp_path, params):
    rng = random.Random(7)
    table = _orders_table(tmp_path)
    _store(table, rng, batches=60)
    filters = Filters.parse(params)
    expected = Counter(order["status"] for order in _stored_orders(table) if filters.accepts(order))
    stored = StoredOrders(table, lambda: range(PARTITIONS))
    assert asyncio.run(stored.statuses(filters, _no_pause)) == expected
    assert sum(expected.values()) > 0


def test_a_partition_stored_without_its_listing_is_read_whole_until_built_anew(tmp_path):
    rng = random.Random(11)
    table = _orders_table(tmp_path)
    _store(table, rng, batches=30)
    _store(table, rng, batches=10, listed=False)  # as Faust's recovery writes restored orders
    behind = [n for n in range(PARTITIONS) if not table.listing(partition_db(table.table, n)).current()]
    assert behind, "a batch stored without the listing leaves it behind"
    orders = _stored_orders(table)
    stored = StoredOrders(table, lambda: range(PARTITIONS))
    params = {"tab": "To ship", "sort": "-paid_at", "limit": "5"}
    assert _all_pages(stored, params) == _reference(orders, params)
    # A listing that is behind is not written to: a batch stored now leaves it behind still.
    _store(table, rng, batches=5)
    assert not all(table.listing(partition_db(table.table, n)).current() for n in range(PARTITIONS))
    for n in range(PARTITIONS):
        listing = table.listing(partition_db(table.table, n))
        counts = list(listing.rebuild(decode))
        assert listing.current() and (not counts or counts[-1] == sum(1 for _ in table.partition_items(n)))
    orders = _stored_orders(table)
    for params in QUERIES[::5]:
        assert _all_pages(stored, params) == _reference(orders, params), params
    statuses = asyncio.run(stored.statuses(Filters(), _no_pause))
    assert statuses == Counter(order["status"] for order in orders if order["status"])


def test_faust_reopens_a_partition_with_its_listing(tmp_path):
    """Faust's RocksDB store (faust-streaming 0.15.3, pinned) opens a partition's database without
    naming its column families: rocksdict then opens every one there is, the listing's too. Fails
    on an upgrade that opens only the default family, or refuses a database that has others."""
    rng = random.Random(3)
    table = _orders_table(tmp_path)
    _store(table, rng, batches=20)
    before = asyncio.run(StoredOrders(table, lambda: range(PARTITIONS)).statuses(Filters(), _no_pause))
    for n in range(PARTITIONS):
        table.table.data._dbs.pop(n).close()  # as a revocation, then a new assignment, would leave it
    reopened = _orders_table(tmp_path)
    assert all(reopened.listing(partition_db(reopened.table, n)).current() for n in range(PARTITIONS))
    stored = StoredOrders(reopened, lambda: range(PARTITIONS))
    assert asyncio.run(stored.statuses(Filters(), _no_pause)) == before


def test_a_tab_and_a_status_that_exclude_each_other_list_and_count_nothing(tmp_path):
    table = _orders_table(tmp_path)
    _store(table, random.Random(5), batches=30)
    stored = StoredOrders(table, lambda: range(PARTITIONS))
    params = {"tab": "Unpaid", "status": "CANCELLED"}
    assert asyncio.run(stored.statuses(Filters.parse(params), _no_pause)) == Counter()
    assert _all_pages(stored, params) == []


def test_orders_stored_while_a_page_is_read_come_once_and_in_their_place(tmp_path, monkeypatch):
    """A batch stored between two reads of a page (the request pauses for the agents) moves orders:
    each still comes at most once, where its sort value puts it, so the page stays in order."""
    import orderflow.streams.api.stored_orders as stored_orders
    monkeypatch.setattr(stored_orders, "SCAN_CHUNK", 1)  # a pause after every order read
    table = _orders_table(tmp_path)
    batch = table.open(0)
    for n in range(40):
        batch.put(f"m-{n:02}".encode(), {"order_id": f"m-{n:02}", "status": ("UNPAID", "AWAITING_SHIPMENT")[n % 2],
                                         "created_at": T0 + n, "paid_at": T0 + n, "total_amount": "5"})
    batch.store(batch.records(), 1)
    offset, moved = iter(range(2, 1000)), iter(range(10, 40))  # orders ahead of the reads

    async def move_one() -> None:  # each pause: an order not read yet moves to the end (paid later)
        batch = table.open(0)
        order_id = f"m-{next(moved):02}".encode()
        batch.put(order_id, {**batch.get(order_id), "paid_at": T0 + 1000 + int(order_id[2:])})
        batch.store(batch.records(), next(offset))

    query = Query.parse({"status": "UNPAID,AWAITING_SHIPMENT", "sort": "paid_at", "limit": "500"})
    page = asyncio.run(StoredOrders(table, lambda: [0]).page(query, move_one))
    ids = [order["order_id"] for order in page]
    assert len(ids) == len(set(ids)) and page == sorted(page, key=query.key) and len(ids) > 10, ids
