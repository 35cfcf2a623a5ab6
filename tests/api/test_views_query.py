"""The order API's query logic on plain order dicts: every filter, each sort, cursor pages, counts, errors."""
from __future__ import annotations

import base64
import json
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.lifecycle import Policy
from orderflow.streams.api.order_query import (MAX_LIMIT, Filters, Query, QueryError, check_known, counts, detail,
                                               summary)
from support.orders import (DAY, HOUR, MIN, T0, after_sales, cancel_request, confirmed, created, delivered, failed,
                            paid, seller_cancelled, shipped, update)
from support.replays import shipped_in_packages, stored_before_packages

NOW = T0 + 10 * HOUR


def item(sku: str, quantity: int, price: str) -> dict:
    return {"sku_id": sku, "product_name": f"product {sku}", "quantity": quantity, "unit_price": price}


def build_orders() -> dict[str, dict]:
    """Orders in every status and condition, made by the real rules."""
    events = [
        created("o1", T0, total_amount="19.98"),                                        # UNPAID
        created("o2", T0 + HOUR, total_amount="19.98"), paid("o2", T0 + HOUR + 5 * MIN),  # To ship
        created("o3", T0 + 2 * HOUR, region="SG", shop_id="shop-2", currency="SGD", total_amount="5.00",
                line_items=[item("sku-2", 1, "5.00")]),
        paid("o3", T0 + 2 * HOUR + MIN), shipped("o3", T0 + 3 * HOUR), update("o3", T0 + 4 * HOUR),  # IN_TRANSIT
        created("o4", T0 + 3 * HOUR, shop_id="shop-2", total_amount="120.00",
                line_items=[item("sku-1", 2, "10.00"), item("sku-3", 1, "100.00")]),
        paid("o4", T0 + 3 * HOUR + MIN), cancel_request("o4", T0 + 4 * HOUR),                # CANCEL_REQUESTED
        created("o5", T0 + 4 * HOUR), seller_cancelled("o5", T0 + 4 * HOUR + MIN),           # CANCELLED
        created("o6", T0 - 3 * DAY), paid("o6", T0 - 3 * DAY + MIN), shipped("o6", T0 - 2 * DAY),
        delivered("o6", T0 - DAY), confirmed("o6", T0 - DAY + HOUR), after_sales("o6", T0 + HOUR),  # COMPLETED
        created("o7", T0 + 5 * HOUR, region="SG", currency="SGD"), paid("o7", T0 + 5 * HOUR + MIN),
        shipped("o7", T0 + 6 * HOUR), failed("o7", T0 + 7 * HOUR),                           # DELIVERY_FAILED
        created("o8", T0 - 4 * DAY, total_amount="19.98"), paid("o8", T0 - 4 * DAY + 10 * MIN),  # late at +72 h
        paid("held", NOW - 30 * MIN),  # its order not created (yet): not an order to list
    ]
    book = OrderBook({}, Policy.load())
    for event in events:
        book.apply(event, event["event_time"])
    book.fire_due(NOW)
    return book.orders


ORDERS = build_orders()


def ids(orders) -> list[str]:
    return [order["order_id"] for order in orders]


def listed(**params) -> list[str]:
    """Every order the query lists, in order, walking its pages."""
    query = Query.parse({k: str(v) for k, v in params.items()})
    seen = []
    while True:
        page, cursor = query.page(query.select(ORDERS.values()))
        seen += ids(page)
        if cursor is None:
            return seen
        query = query.resume(cursor)


def matching(**params) -> set[str]:
    return set(listed(limit=MAX_LIMIT, **params))


def test_the_fixture_has_every_status_and_condition():
    statuses = {order_id: order["status"] for order_id, order in ORDERS.items()}
    assert statuses == {"o1": "UNPAID", "o2": "AWAITING_SHIPMENT", "o3": "IN_TRANSIT", "o4": "AWAITING_SHIPMENT",
                        "o5": "CANCELLED", "o6": "COMPLETED", "o7": "AWAITING_COLLECTION",
                        "o8": "AWAITING_SHIPMENT", "held": None}
    assert set(ORDERS["o8"]["conditions"]) == {"LATE_DISPATCH"}


@pytest.mark.parametrize("params, expected", [
    ({}, {"o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"}),
    ({"tab": "Unpaid"}, {"o1"}),
    ({"tab": "To ship"}, {"o2", "o4", "o8"}),
    ({"tab": "to_ship"}, {"o2", "o4", "o8"}),
    ({"tab": "Shipped"}, {"o3", "o7"}),
    ({"tab": "Completed"}, {"o6"}),
    ({"tab": "Cancelled"}, {"o5"}),
    ({"tab": "Unpaid,Cancelled"}, {"o1", "o5"}),
    ({"status": "IN_TRANSIT"}, {"o3"}),
    ({"status": "awaiting_collection,COMPLETED"}, {"o6", "o7"}),
    ({"tab": "Shipped", "status": "IN_TRANSIT"}, {"o3"}),
    ({"tab": "Unpaid", "status": "IN_TRANSIT"}, set()),
    ({"created_from": T0 + 2 * HOUR}, {"o3", "o4", "o5", "o7"}),
    ({"created_to": T0 + 2 * HOUR}, {"o1", "o2", "o6", "o8"}),  # the end is excluded
    ({"created_from": "2026-11-18T12:06:40Z", "created_to": "2026-11-18T14:06:40+00:00"}, {"o2", "o3"}),
    ({"paid_from": T0}, {"o2", "o3", "o4", "o7"}),  # unpaid orders have no paid time
    ({"paid_to": T0}, {"o6", "o8"}),
    ({"region": "SG"}, {"o3", "o7"}),
    ({"region": "GB,SG", "shop_id": "shop-2"}, {"o3", "o4"}),
    ({"shop_id": "shop-2"}, {"o3", "o4"}),
    ({"sku_id": "sku-3"}, {"o4"}),
    ({"sku_id": "sku-1", "tab": "Unpaid"}, {"o1"}),
    ({"condition": "LATE_DISPATCH"}, {"o8"}),
    ({"condition": "CANCEL_REQUESTED"}, {"o4"}),
    ({"condition": "DELIVERY_FAILED"}, {"o7"}),
    ({"condition": "AFTER_SALES_OPEN"}, {"o6"}),
    ({"condition": "LATE_DISPATCH,DELIVERY_FAILED"}, {"o7", "o8"}),
])
def test_each_filter_selects_exactly_the_matching_orders(params, expected):
    assert matching(**params) == expected


@pytest.mark.parametrize("sort, expected", [
    ("created_at", ["o8", "o6", "o1", "o2", "o3", "o4", "o5", "o7"]),
    ("-created_at", ["o7", "o5", "o4", "o3", "o2", "o1", "o6", "o8"]),
    # Unpaid orders (no paid time) come last in both directions.
    ("paid_at", ["o8", "o6", "o2", "o3", "o4", "o7", "o1", "o5"]),
    ("-paid_at", ["o7", "o4", "o3", "o2", "o6", "o8", "o1", "o5"]),
    # Equal amounts are ordered by order id, so that pages never overlap.
    ("total_amount", ["o3", "o1", "o2", "o5", "o6", "o7", "o8", "o4"]),
    ("-total_amount", ["o4", "o1", "o2", "o5", "o6", "o7", "o8", "o3"]),
    ("order_id", ["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"]),
])
@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_each_sort_and_walking_its_pages_yields_every_order_once_in_order(sort, expected, limit):
    assert listed(sort=sort, limit=limit) == expected


def test_default_listing_is_newest_first_fifty_a_page():
    query = Query.parse({})
    assert (query.sort, query.limit) == ("-created_at", 50)


def test_pages_of_several_workers_merge_into_the_same_pages_as_one_worker():
    """The fan-out: each worker answers its own page for the same cursor; the merge cuts one page."""
    parts = ({"o1", "o4", "o7"}, {"o2", "o3", "o5", "o6", "o8"})
    workers = [[o for o in ORDERS.values() if o["order_id"] in part] for part in parts]
    for sort in ("created_at", "-paid_at", "total_amount", "order_id"):
        query, seen = Query.parse({"sort": sort, "limit": "2"}), []
        while True:
            answers = [query.page(query.select(orders)) for orders in workers]
            page, cursor = query.merge([shown for shown, _ in answers], more=any(c for _, c in answers))
            seen += ids(page)
            if cursor is None:
                break
            query = query.resume(cursor)
        assert seen == listed(sort=sort, limit=MAX_LIMIT)


def test_a_page_stays_put_when_orders_before_the_cursor_change():
    """A keyset cursor: new orders sorting before it do not shift or repeat the next page."""
    query = Query.parse({"sort": "created_at", "limit": "3"})
    first, cursor = query.page(query.select(ORDERS.values()))
    newcomer = {**ORDERS["o1"], "order_id": "o0", "created_at": T0 - 10 * DAY}
    second, _ = query.resume(cursor).page(query.resume(cursor).select([newcomer, *ORDERS.values()]))
    assert ids(first) == ["o8", "o6", "o1"] and ids(second) == ["o2", "o3", "o4"]


def test_summaries_carry_their_sort_keys_so_merged_pages_sort_the_same():
    for sort in ("created_at", "-paid_at", "-total_amount", "order_id", "ship_by", "-ship_by"):
        query = Query.parse({"sort": sort})
        for shown in (summary, detail):
            assert [query.key(shown(o)) for o in ORDERS.values() if o["status"]] == \
                   [query.key(o) for o in ORDERS.values() if o["status"]], (sort, shown)


@pytest.mark.parametrize("shown", [summary, detail])
def test_pages_of_shown_orders_sorted_by_ship_by_reach_every_order(shown):
    """The API cuts its pages (and their cursors) from orders as it shows them."""
    query, seen = Query.parse({"sort": "ship_by", "limit": "1"}), []
    while True:
        page, cursor = query.page([shown(o) for o in query.select(ORDERS.values())])
        seen += ids(page)
        if cursor is None:
            break
        query = query.resume(cursor)
    assert seen == listed(sort="ship_by", limit=MAX_LIMIT) and len(seen) == 8
    assert seen[:3] == ["o8", "o2", "o4"]  # to ship, the one past its ship-by first; then those with none


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(0, 5), hs.one_of(hs.none(), hs.integers(0, 5)), hs.integers(0, 3)),
                max_size=25),
       hs.sampled_from(["created_at", "-created_at", "paid_at", "-paid_at", "total_amount", "-total_amount",
                        "order_id"]),
       hs.integers(1, 4))
def test_any_orders_any_sort_any_page_size_pages_cover_the_sorted_list_once(rows, sort, limit):
    orders = [{"order_id": f"x{n}", "status": "UNPAID", "created_at": c, "paid_at": p, "total_amount": f"{a}.50"}
              for n, (c, p, a) in enumerate(rows)]
    query, seen = Query.parse({"sort": sort, "limit": str(limit)}), []
    while True:
        page, cursor = query.page(query.select(orders))
        assert len(page) <= limit
        seen += page
        if cursor is None:
            break
        query = query.resume(cursor)
    assert seen == sorted(orders, key=query.key) and len(seen) == len(orders)


@pytest.mark.parametrize("params, param", [
    ({"tab": "Shipping"}, "tab"),
    ({"tab": ""}, "tab"),
    ({"status": "PAID"}, "status"),
    ({"condition": "LATE"}, "condition"),
    ({"sort": "price"}, "sort"),
    ({"sort": "-order_id"}, "sort"),
    ({"created_from": "yesterday"}, "created_from"),
    ({"created_to": "2026-13-01"}, "created_to"),
    ({"paid_from": "1.5"}, "paid_from"),
    ({"paid_to": "noon"}, "paid_to"),
    ({"limit": "0"}, "limit"),
    ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'{"q": 1}').decode()}, "cursor"),
])
def test_bad_values_are_refused_naming_their_parameter(params, param):
    with pytest.raises(QueryError) as refused:
        Query.parse(params)
    assert refused.value.param == param and str(refused.value).startswith(f"{param}: ")


def test_a_cursor_only_resumes_the_query_it_came_from():
    query = Query.parse({"sort": "total_amount", "limit": "2"})
    _, cursor = query.page(query.select(ORDERS.values()))
    # The page size may change from page to page.
    assert Query.parse({"sort": "total_amount", "limit": "5", "cursor": cursor}).after is not None
    for other in ({"sort": "created_at"}, {"sort": "total_amount", "region": "GB"}):
        with pytest.raises(QueryError, match="cursor: was given out for other filters or another sort"):
            Query.parse({**other, "cursor": cursor})
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    # Values no order holds (the listing could not seek to them) are refused, not answered wrongly.
    for sort, value in (("total_amount", "NaN"), ("total_amount", "-0.5"), ("total_amount", "1E+30"),
                        ("created_at", -5), ("created_at", 2 ** 64), ("created_at", True)):
        fingerprint = Query.parse({"sort": sort})._fingerprint()
        tampered = base64.urlsafe_b64encode(json.dumps({**payload, "q": fingerprint, "v": value}).encode()).decode()
        with pytest.raises(QueryError, match="cursor: not a cursor"):
            Query.parse({"sort": sort, "cursor": tampered})


def test_unknown_parameters_are_refused_by_name():
    with pytest.raises(QueryError) as refused:
        check_known({"stauts": "UNPAID"}, ["status", "tab"])
    assert refused.value.param == "stauts" and "known: status, tab" in str(refused.value)


def test_counts_per_tab_and_status_with_filters():
    def count(**params):
        filters = Filters.parse(params)
        return counts(Counter(o["status"] for o in ORDERS.values() if filters.accepts(o)))

    everything = count()
    assert everything["total"] == 8
    assert everything["tabs"] == {"Unpaid": 1, "To ship": 3, "Shipped": 2, "Completed": 1, "Cancelled": 1}
    assert everything["statuses"]["AWAITING_SHIPMENT"] == 3 and everything["statuses"]["DELIVERED"] == 0
    assert count(region="SG")["tabs"] == {"Unpaid": 0, "To ship": 0, "Shipped": 2, "Completed": 0, "Cancelled": 0}


def test_detail_shows_state_history_tracking_deadlines_and_after_sales_with_the_address_masked():
    shown = detail(ORDERS["o7"])
    assert (shown["status"], shown["tab"]) == ("AWAITING_COLLECTION", "Shipped")
    assert list(shown["conditions"]) == ["DELIVERY_FAILED"]
    assert [(h["from_status"], h["to_status"]) for h in shown["history"]] == [
        (None, "UNPAID"), ("UNPAID", "AWAITING_SHIPMENT"), ("AWAITING_SHIPMENT", "AWAITING_COLLECTION")]
    assert [t["status"] for t in shown["tracking"]] == ["SHIPPED", "DELIVERY_FAILED"]
    assert shown["deadlines"] == [{"name": "REDELIVERY_WINDOW", "due": "2026-11-25T18:06:40.000Z",
                                   "due_at": T0 + 7 * HOUR + 7 * DAY}]
    assert shown["shipping_address"]["recipient_name"] == "A***" and shown["shipping_address"]["city"] == "London"
    assert "seen" not in shown and "early" not in shown
    assert detail(ORDERS["o7"], include_personal_data=True)["shipping_address"]["phone"] == "+44 7700 900123"
    assert detail(ORDERS["o6"])["after_sales"][0]["kind"] == "RETURN"
    listed_row = summary(ORDERS["o4"])
    assert listed_row["sku_ids"] == ["sku-1", "sku-3"] and listed_row["items"] == 3
    assert listed_row["conditions"] == ["CANCEL_REQUESTED"] and "shipping_address" not in listed_row
    assert Decimal(listed_row["total_amount"]) == Decimal("120.00")


def test_detail_shows_each_package_with_its_lines_carrier_status_and_own_tracking():
    order = shipped_in_packages()["two"]
    shown = detail(order)
    assert shown["status"] == "IN_TRANSIT"
    assert [{k: v for k, v in p.items() if k != "tracking"} for p in shown["packages"]] == [
        {"package_id": "A", "line_ids": ["1", "3"], "carrier": "Royal Mail", "tracking_number": "RM1",
         "status": "DELIVERED", "shipped_at": T0 + DAY, "delivered_at": T0 + 3 * DAY, "failed": None},
        {"package_id": "B", "line_ids": ["2"], "carrier": "DPD", "tracking_number": "DPD2", "status": "IN_TRANSIT",
         "shipped_at": T0 + DAY + HOUR, "delivered_at": None, "failed": None}]
    a, b = shown["packages"]
    assert [(e["status"], e["at"] - T0) for e in a["tracking"]] == [("SHIPPED", DAY), ("IN_TRANSIT", 2 * DAY),
                                                                     ("DELIVERED", 3 * DAY)]
    assert [(e["status"], e["at"] - T0) for e in b["tracking"]] == [("SHIPPED", DAY + HOUR), ("IN_TRANSIT", 2 * DAY)]
    assert len(shown["tracking"]) == 5  # the order's tracking, every package's, as before
    # B's own deadline is named KIND:package_id; A's (the first package's) would have the plain name.
    assert [d["name"] for d in shown["deadlines"]] == ["SHIPMENT_STALLED:B"]
    # Clients of one carrier and tracking number per order read the first package's.
    for view in (shown, summary(order)):
        assert (view["carrier"], view["tracking_number"]) == ("Royal Mail", "RM1")
        assert [(line["line_id"], line["package_id"]) for line in view["lines"]] == [("1", "A"), ("2", "B"),
                                                                                     ("3", "A")]
    assert json.loads(json.dumps(shown)) == shown  # as the API sends it


def test_a_partly_shipped_order_is_to_ship_with_its_unshipped_lines_in_no_package():
    orders = shipped_in_packages()
    part = orders["part"]
    listed_row = summary(part)
    assert (listed_row["status"], listed_row["tab"]) == ("PARTIALLY_SHIPPING", "To ship")
    assert [(line["line_id"], line["package_id"]) for line in listed_row["lines"]] == [
        ("1", None), ("2", "P"), ("3", None)]
    assert (listed_row["carrier"], listed_row["tracking_number"]) == ("Evri", "EV7")
    assert [(p["package_id"], p["status"]) for p in detail(part)["packages"]] == [("P", "AWAITING_COLLECTION")]
    # Its ship-by clock runs on: it is still sorted and judged by it.
    assert listed_row["ship_by"] == part["deadlines"]["SHIP_BY"] == T0 + MIN + 72 * HOUR
    for params in ({"tab": "To ship"}, {"status": "partially_shipping"}):
        assert Filters.parse(params).accepts(part) and not Filters.parse(params).accepts(orders["two"])
    assert counts(Counter(o["status"] for o in orders.values()))["tabs"]["To ship"] == 1
    # Not shipped at all: no package, no carrier.
    fresh = ORDERS["o2"]
    assert detail(fresh)["packages"] == [] and summary(fresh)["carrier"] is None
    assert {line["package_id"] for line in summary(fresh)["lines"]} == {None}


def test_an_order_stored_before_packages_shows_its_parcel_as_package_1():
    order = ORDERS["o3"]  # shipped, then scanned in transit
    old = stored_before_packages(order)
    shown = detail(old)
    assert [(p["package_id"], p["line_ids"], p["carrier"], p["tracking_number"], p["status"])
            for p in shown["packages"]] == [("1", ["1"], "Royal Mail", "RM123", "IN_TRANSIT")]
    assert [e["status"] for e in shown["packages"][0]["tracking"]] == ["SHIPPED", "IN_TRANSIT"]
    assert (summary(old)["carrier"], summary(old)["tracking_number"]) == ("Royal Mail", "RM123")
    assert [line["package_id"] for line in summary(old)["lines"]] == ["1"]
