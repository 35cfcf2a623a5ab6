"""Analytics without Kafka: facts from order steps, windowed aggregates worked out by hand,
late corrections, expiry, duplicates, and `orderflow stats` over a replay."""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as strat
from PIL import Image

from orderflow.streams.kafka import topics
from orderflow.streams.analytics.facts import (Aggregator, Latest, MemoryStore, WindowRow, by_row, facts, metric_rows,
                                               replay_records, row_key, rows, windows_of, zones)
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.commands import main
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.lifecycle import Policy
from support.orders import (DAY, HOUR, MIN, after_sales, cancel_request, cancel_response, created, delivered, failed,
                            paid, review, seller_cancelled, shipped)

POLICY = Policy.load()
ZONES = zones(POLICY)
D = 1_794_960_000_000  # 2026-11-18T00:00Z, a Wednesday; in November a GB local day is the UTC day
UNTIL = D + DAY
SG_18 = D - 8 * HOUR  # 2026-11-18 00:00 in Singapore (UTC+8)
SG_19 = D + 16 * HOUR


def at(hours: float, minutes: int = 0) -> int:
    return D + int(hours * HOUR) + minutes * MIN


def items(*lines: tuple[str, int, str]) -> dict:
    """line_items and their total_amount, for created()."""
    total = sum(quantity * Decimal(price) for _, quantity, price in lines)
    return {"line_items": [{"sku_id": sku, "product_name": sku, "quantity": quantity, "unit_price": price}
                           for sku, quantity, price in lines], "total_amount": str(total)}


def paid_amount(order_id: str, when: int, amount: str) -> dict:
    return {**paid(order_id, when), "amount": amount}


def day_of_events() -> list[dict]:
    """One day of GB traffic in two shops (plus orders from earlier days whose deadlines fall on it),
    and two SG orders either side of Singapore's midnight; in arrival order."""
    return [
        # o5 (shop-1): paid three days earlier, so its 72 h ship-by passes on the day at 09:00.
        created("o5", at(-72 + 8), **items(("sku-A", 1, "9.99"))),
        paid_amount("o5", at(-72 + 9), "9.99"),
        # o6 (shop-2): never paid; the 48 h auto-cancel falls on the day at 08:00.
        created("o6", at(-48 + 8), shop_id="shop-2", **items(("sku-C", 1, "5.00"))),
        created("o1", at(10, 5), **items(("sku-A", 2, "9.99"))),
        paid_amount("o1", at(10, 10), "19.98"),
        created("o2", at(10, 20), **items(("sku-B", 1, "50.00"), ("sku-A", 1, "9.99"))),
        created("o3", at(10, 30), shop_id="shop-2", **items(("sku-C", 3, "5.00"))),
        seller_cancelled("o3", at(10, 40)),
        paid_amount("o2", at(11, 5), "59.99"),
        created("o4", at(11, 15), shop_id="shop-2", **items(("sku-A", 1, "9.99"))),
        paid_amount("o4", at(11, 20), "9.99"),
        cancel_request("o4", at(11, 30)),
        cancel_response("o4", at(11, 45), "ACCEPT"),
        shipped("o1", at(12)),
        shipped("o2", at(13)),
        shipped("o5", at(13, 30)),  # late: counted at its ship-by time, not again now
        created("o7", at(15, 30), region="SG", shop_id="shop-9", currency="SGD", **items(("sku-S", 1, "20.00"))),
        paid_amount("o7", at(15, 45), "20.00"),  # 23:45 in Singapore: the 18th there
        created("o8", at(16, 30), region="SG", shop_id="shop-9", currency="SGD", **items(("sku-S", 2, "20.00"))),
        paid_amount("o8", at(16, 40), "40.00"),  # 00:40 in Singapore: the 19th there
        failed("o2", at(18)),
        delivered("o5", at(19)),
        delivered("o1", at(20)),
        review("o1", at(21), rating=5),
        review("o5", at(21, 30), rating=2),
        after_sales("o1", at(22), kind="RETURN"),
    ]


def lines(events: list[dict]) -> list[Line]:
    return [Line(n, event) for n, event in enumerate(events, 1)]


@pytest.fixture(scope="module")
def figures() -> dict[WindowRow, dict]:
    latest = Latest()
    for record in replay_records(lines(day_of_events()), UNTIL, POLICY):
        latest.add(record)
    return latest.windows()


def row(figures, granularity: str, start: int, shop: str | None, region: str = "GB") -> dict:
    (found,) = [metrics for r, metrics in figures.items()
                if (r.granularity, r.window_start, r.region, r.shop_id) == (granularity, start, region, shop)]
    return found


# --- facts -----------------------------------------------------------------------------------------------------------

def observed_facts(events: list[dict]) -> list[dict]:
    book = OrderBook({}, POLICY)
    found: list[dict] = []
    book.observers.append(lambda before, after, outputs: found.extend(facts(before, after, outputs)))
    list(replay(lines(events), UNTIL, POLICY, book))
    return found


def test_each_step_of_an_order_becomes_facts_with_its_event_time():
    events = day_of_events()
    found = observed_facts(events)
    o1 = [(f["kind"], f["at"]) for f in found if f["order_id"] == "o1"]
    assert o1 == [("ORDER_CREATED", at(10, 5)), ("ORDER_PAID", at(10, 10)), ("SHIPPED_IN_TIME", at(12)),
                  ("DELIVERED", at(20)), ("REVIEW_POSTED", at(21)), ("AFTER_SALES_OPENED", at(22))]
    o5 = [(f["kind"], f["at"]) for f in found if f["order_id"] == "o5"]
    # Overdue when the ship-by time passed (a deadline: its due time), not counted again when handed over.
    assert ("SHIP_BY_OVERDUE", at(9)) in o5 and all(kind != "SHIPPED_IN_TIME" for kind, _ in o5)
    of_o1 = {f["kind"]: f for f in found if f["order_id"] == "o1"}
    assert of_o1["ORDER_PAID"]["amount"] == "19.98" and of_o1["ORDER_PAID"]["currency"] == "GBP"
    assert of_o1["ORDER_PAID"]["line_items"] == [{"sku_id": "sku-A", "quantity": 2, "unit_price": "9.99"}]
    assert of_o1["REVIEW_POSTED"]["rating"] == 5 and of_o1["AFTER_SALES_OPENED"]["case_kind"] == "RETURN"
    cancels = {f["order_id"]: (f["reason"], f["initiator"], f["at"]) for f in found if f["kind"] == "ORDER_CANCELLED"}
    assert cancels == {"o3": ("SELLER_CANCELLED", "SELLER", at(10, 40)),
                       "o4": ("BUYER_REQUEST_ACCEPTED", "BUYER", at(11, 45)),
                       "o6": ("UNPAID_TIMEOUT", "SYSTEM", at(8))}
    failures = [f for f in found if f["kind"] == "DELIVERY_FAILED"]
    assert [(f["order_id"], f["at"]) for f in failures] == [("o2", at(18))]
    # Ids come from the causes: a second run of the same traffic repeats them, and none repeats within a run.
    ids = [f["fact_id"] for f in found]
    assert ids == [f["fact_id"] for f in observed_facts(events)] and len(set(ids)) == len(ids)


def test_every_fact_goes_to_its_shop_row_and_its_region_row_and_fits_the_facts_schema():
    codec = codec_for_topic(topics.ANALYTICS_FACTS)
    copies = []
    for fact in observed_facts(day_of_events()):
        shop_row, region_row = rows(fact)
        assert shop_row["shop_id"] == fact["shop_id"] and region_row["shop_id"] is None
        copies += [shop_row, region_row]
    grouped = by_row(copies)
    assert sorted(copy for group in grouped.values() for copy in map(repr, group)) == sorted(map(repr, copies))
    for key, group in grouped.items():
        assert {row_key(copy) for copy in group} == {key}
        decoded = codec.decode(codec.encode({"facts": group}))["facts"]
        assert [{k: v for k, v in d.items() if v not in (None, [])} for d in decoded] == \
            [{k: v for k, v in copy.items() if v not in (None, [])} for copy in group]


# --- every aggregate, by hand ----------------------------------------------------------------------------------------

def test_a_gb_day_for_the_whole_region(figures):
    assert row(figures, "DAY", D, None) == {
        "orders_created": [(None, "4")],  # o1 o2 o3 o4 (o5, o6 were created on earlier days)
        "orders_paid": [(None, "3")],  # o1 o2 o4 (o5 paid three days earlier)
        "gmv": [("GBP", "89.96")],  # 19.98 + 59.99 + 9.99
        "average_order_value": [("GBP", "29.99")],  # 89.96 / 3 = 29.9866...
        "payment_conversion": [(None, "0.7500")],  # 3 paid / 4 created
        "cancellations": [(None, "3")],  # o3 by the seller, o4 on request, o6 unpaid
        "cancellations_by_reason": [("BUYER_REQUEST_ACCEPTED", "1"), ("SELLER_CANCELLED", "1"),
                                    ("UNPAID_TIMEOUT", "1")],
        "cancellations_by_initiator": [("BUYER", "1"), ("SELLER", "1"), ("SYSTEM", "1")],
        "cancellations_by_cancel_reason": [("OUT_OF_STOCK", "1")],  # the seller's, from the catalogue
        "late_dispatch_rate": [(None, "0.3333")],  # o5 overdue / (o5 + o1 o2 handed over in time)
        "delivery_failure_rate": [(None, "0.3333")],  # o2 failed / (o2 + o1 o5 delivered)
        "average_rating": [(None, "3.50")],  # (5 + 2) / 2
        "after_sales_opened": [("RETURN", "1")],  # o1
        "after_sales_rate": [("RETURN", "0.5000")],  # o1's return / 2 delivered
        "after_sales_rate_by_reason": [("RETURN:DAMAGED", "0.5000")],
        "top_sku_units": [("sku-A", "4"), ("sku-B", "1")],  # paid lines: o1 2 A, o2 1 B + 1 A, o4 1 A
        "top_sku_sales": [("GBP:sku-B", "50.00"), ("GBP:sku-A", "39.96")],  # A: 19.98 + 9.99 + 9.99
    }


def test_a_gb_day_per_shop(figures):
    assert row(figures, "DAY", D, "shop-1") == {
        "orders_created": [(None, "2")],  # o1 o2
        "orders_paid": [(None, "2")],
        "gmv": [("GBP", "79.97")],  # 19.98 + 59.99
        "average_order_value": [("GBP", "39.99")],  # 39.985, half up
        "payment_conversion": [(None, "1.0000")],
        "late_dispatch_rate": [(None, "0.3333")],  # o5 / (o5 o1 o2)
        "delivery_failure_rate": [(None, "0.3333")],  # o2 / (o2 o1 o5)
        "average_rating": [(None, "3.50")],
        "after_sales_opened": [("RETURN", "1")],
        "after_sales_rate": [("RETURN", "0.5000")],
        "after_sales_rate_by_reason": [("RETURN:DAMAGED", "0.5000")],
        "top_sku_units": [("sku-A", "3"), ("sku-B", "1")],
        "top_sku_sales": [("GBP:sku-B", "50.00"), ("GBP:sku-A", "29.97")],
    }
    assert row(figures, "DAY", D, "shop-2") == {
        "orders_created": [(None, "2")],  # o3 o4
        "orders_paid": [(None, "1")],  # o4
        "gmv": [("GBP", "9.99")],
        "average_order_value": [("GBP", "9.99")],
        "payment_conversion": [(None, "0.5000")],
        "cancellations": [(None, "3")],
        "cancellations_by_reason": [("BUYER_REQUEST_ACCEPTED", "1"), ("SELLER_CANCELLED", "1"),
                                    ("UNPAID_TIMEOUT", "1")],
        "cancellations_by_initiator": [("BUYER", "1"), ("SELLER", "1"), ("SYSTEM", "1")],
        "cancellations_by_cancel_reason": [("OUT_OF_STOCK", "1")],  # the seller's, from the catalogue
        "top_sku_units": [("sku-A", "1")],
        "top_sku_sales": [("GBP:sku-A", "9.99")],
    }


def test_gb_hours_and_minutes(figures):
    assert row(figures, "HOUR", at(10), None) == {
        "orders_created": [(None, "3")],  # o1 10:05, o2 10:20, o3 10:30
        "orders_paid": [(None, "1")],  # o1 10:10
        "gmv": [("GBP", "19.98")],
        "average_order_value": [("GBP", "19.98")],
        "payment_conversion": [(None, "0.3333")],
        "cancellations": [(None, "1")],  # o3 10:40
        "cancellations_by_reason": [("SELLER_CANCELLED", "1")],
        "cancellations_by_initiator": [("SELLER", "1")],
        "cancellations_by_cancel_reason": [("OUT_OF_STOCK", "1")],  # the seller's, from the catalogue
        "top_sku_units": [("sku-A", "2")],
        "top_sku_sales": [("GBP:sku-A", "19.98")],
    }
    eleven = row(figures, "HOUR", at(11), None)
    # Payments of the hour over creations of the hour: o2 (created at 10:20) and o4, for o4 alone.
    assert eleven["payment_conversion"] == [(None, "2.0000")]
    assert eleven["gmv"] == [("GBP", "69.98")] and eleven["average_order_value"] == [("GBP", "34.99")]
    assert row(figures, "HOUR", at(8), "shop-2") == {
        "cancellations": [(None, "1")], "cancellations_by_reason": [("UNPAID_TIMEOUT", "1")],
        "cancellations_by_initiator": [("SYSTEM", "1")],
    }
    assert row(figures, "HOUR", at(9), "shop-1") == {"late_dispatch_rate": [(None, "1.0000")]}
    assert row(figures, "MINUTE", at(10, 5), None) == {"orders_created": [(None, "1")],
                                                       "payment_conversion": [(None, "0.0000")]}


def test_a_day_is_the_regions_local_day(figures):
    # o7 at 23:30/23:45 and o8 at 00:30/00:40 Singapore time: two local days, one UTC day.
    assert row(figures, "DAY", SG_18, "shop-9", region="SG") == {
        "orders_created": [(None, "1")], "orders_paid": [(None, "1")], "gmv": [("SGD", "20.00")],
        "average_order_value": [("SGD", "20.00")], "payment_conversion": [(None, "1.0000")],
        "top_sku_units": [("sku-S", "1")], "top_sku_sales": [("SGD:sku-S", "20.00")],
    }
    assert row(figures, "DAY", SG_19, None, region="SG")["gmv"] == [("SGD", "40.00")]
    assert [w.start for w in windows_of(at(16, 30), ZONES("SG"))] == [at(16, 30), at(16), SG_19]
    assert {r.window_end - r.window_start for r in figures if r.granularity == "DAY"} == {DAY}


def test_revisions_count_the_changes_of_each_metric():
    latest, revisions = Latest(), {}
    for record in replay_records(lines(day_of_events()), UNTIL, POLICY):
        latest.add(record)
        if (record["granularity"], record["window_start"], record["shop_id"]) == ("DAY", D, None):
            revisions[record["metric"]] = record["revision"]
    assert revisions["orders_created"] == 4 and revisions["orders_paid"] == 3
    assert revisions["payment_conversion"] == 7  # 0/1, 1/1, 1/2, 1/3, 2/3, 2/4, 3/4: once per change of value
    assert revisions["top_sku_units"] == 3  # one per paid order that changed the list


def test_what_is_published_is_the_windows_state_recomputed():
    # Each kind of fact recomputes only the metrics it names: none may be left out.
    store = MemoryStore()
    latest = Latest()
    for record in replay_records(lines(day_of_events()), UNTIL, POLICY, Aggregator(store, ZONES)):
        latest.add(record)
    published = latest.windows()
    heads = [(key.split("\x1f"), head) for entries in store.entries.values() for key, head in entries.items()
             if key.startswith("window\x1f")]
    assert len(heads) == 45  # every window of the day that has not expired by its last fact
    for (_, granularity, start, region, shop), head in heads:
        assert metric_rows(head) == row(published, granularity, int(start), shop or None, region)


# --- lateness, expiry, duplicates ------------------------------------------------------------------------------------

def fact(kind: str, when: int, fact_id: str, shop: str | None = "shop-1", **fields) -> dict:
    return {"fact_id": fact_id, "kind": kind, "at": when, "order_id": f"order-{fact_id}", "region": "GB",
            "shop_id": shop, **fields}


def values(records: list[dict], granularity: str, metric: str) -> list[tuple]:
    return [(r["window_start"], r["value"], r["revision"]) for r in records
            if (r["granularity"], r["metric"]) == (granularity, metric)]


def test_a_late_fact_corrects_its_window_with_a_higher_revision():
    aggregator = Aggregator(MemoryStore(), ZONES)
    first = aggregator.add(fact("ORDER_CREATED", at(10, 5), "a"))
    assert values(first, "HOUR", "orders_created") == [(at(10), "1", 1)]
    aggregator.add(fact("ORDER_CREATED", at(11, 30), "b"))  # stream time passes the end of 10:00-11:00
    late = aggregator.add(fact("ORDER_CREATED", at(10, 50), "c"))
    assert values(late, "HOUR", "orders_created") == [(at(10), "2", 2)]
    assert values(late, "DAY", "orders_created") == [(D, "3", 3)]
    assert values(late, "MINUTE", "orders_created") == [(at(10, 50), "1", 1)]  # 40 min late: within an hour
    latest = Latest()
    for record in first + late:
        latest.add(record)
    assert row(latest.windows(), "HOUR", at(10), "shop-1")["orders_created"] == [(None, "2")]


def test_windows_expire_with_stream_time_and_facts_for_them_are_counted_too_late(caplog):
    store = MemoryStore()
    aggregator = Aggregator(store, ZONES)
    aggregator.add(fact("ORDER_PAID", at(10), "p", currency="GBP", amount="5.00",
                        line_items=[{"sku_id": "s", "quantity": 1, "unit_price": "5.00"}]))
    assert len(store) == 7  # 3 window heads, 3 SKU totals, 1 seen id
    # Two hours later the minute window is gone (kept 1 h after its end), the hour and the day are not.
    partly = aggregator.add(fact("ORDER_CREATED", at(12), "x"))
    late = aggregator.add(fact("ORDER_CREATED", at(10, 30), "y"))
    assert [r["granularity"] for r in late if r["metric"] == "orders_created"] == ["HOUR", "DAY"]
    assert aggregator.tally["missed_windows"] == 1 and aggregator.tally["expired"] == 2
    # p's minute head and SKU total gone; x: new minute and hour heads and its seen id; y: its seen id.
    assert partly and len(store) == 7 - 2 + 3 + 1
    # Five days later the day is gone too (kept 3 days): nothing of the 18th is left.
    aggregator.add(fact("ORDER_CREATED", at(5 * 24), "z"))
    assert len(store) == 4  # z's 3 window heads and its seen id
    caplog.set_level(logging.WARNING, logger="orderflow.analytics")
    assert aggregator.add(fact("ORDER_CREATED", at(10, 30), "too-late")) == []
    assert aggregator.tally["too_late"] == 1 and len(store) == 4
    assert not caplog.records  # counted in the tally, summarised by the worker: no line per fact
    tally = aggregator.tally
    assert tally["in"] == tally["applied"] + tally["duplicates"] + tally["too_late"] == 5


def test_state_stays_bounded_under_steady_traffic():
    store = MemoryStore()
    aggregator = Aggregator(store, ZONES)
    sizes = []
    for n in range(0, 20 * 24 * 6):  # 20 days, a fact every 10 minutes, over 4 shops
        aggregator.add(fact("ORDER_CREATED", D + n * 10 * MIN, f"f{n}", shop=f"shop-{n % 4}"))
        sizes.append(len(store))
    # Days 10 to 20 hold no more than days 5 to 10: what expires makes room for what comes.
    assert max(sizes[10 * 144:]) <= max(sizes[5 * 144:10 * 144])
    assert max(sizes) < 1600  # seen ids of about 4 days (576), 4 shops' hours (2 days) and minutes (1 h), days


def test_a_repeated_fact_is_counted_once():
    aggregator = Aggregator(MemoryStore(), ZONES)
    once = aggregator.add(fact("ORDER_CREATED", at(10), "same"))
    assert aggregator.add(fact("ORDER_CREATED", at(10), "same")) == []
    assert aggregator.tally["duplicates"] == 1
    # The region-wide copy is another row: counted there, once too.
    assert aggregator.add(fact("ORDER_CREATED", at(10), "same", shop=None))
    assert aggregator.add(fact("ORDER_CREATED", at(10), "same", shop=None)) == []
    # Later facts still count from where the first left off.
    again = aggregator.add(fact("ORDER_CREATED", at(10), "other"))
    assert values(once, "DAY", "orders_created") == [(D, "1", 1)]
    assert values(again, "DAY", "orders_created") == [(D, "2", 2)]


@settings(max_examples=60, deadline=None)
@given(strat.lists(strat.tuples(strat.integers(0, 14), strat.integers(1, 5), strat.sampled_from(["1.00", "2.50"])),
                   min_size=1, max_size=40))
def test_top_skus_are_exactly_the_ten_biggest_totals(lines_paid):
    aggregator, latest = Aggregator(MemoryStore(), ZONES), Latest()
    units, sales = {}, {}
    for n, (sku_number, quantity, price) in enumerate(lines_paid):
        sku = f"sku-{sku_number:02d}"
        units[sku] = units.get(sku, 0) + quantity
        sales[sku] = sales.get(sku, 0) + quantity * Decimal(price)
        for record in aggregator.add(fact("ORDER_PAID", at(10), f"p{n}", currency="GBP", amount="1",
                                          line_items=[{"sku_id": sku, "quantity": quantity, "unit_price": price}])):
            latest.add(record)
    day = row(latest.windows(), "DAY", D, "shop-1")
    # Stale rows of SKUs that dropped out of the list are gone: only the highest revision counts.
    assert day["top_sku_units"] == [(sku, str(units[sku])) for sku in sorted(units, key=lambda s: (-units[s], s))[:10]]
    assert day["top_sku_sales"] == [(f"GBP:{sku}", str(sales[sku]))
                                    for sku in sorted(sales, key=lambda s: (-sales[s], s))[:10]]


# --- orderflow stats over a replay -----------------------------------------------------------------------------------

@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in day_of_events()))
    return path


def stats(*args):
    result = CliRunner().invoke(main, ["stats", *map(str, args)], prog_name="orderflow")
    return result


def table_rows(output: str) -> dict[tuple[str, str], dict[str, str]]:
    """The table's rows by (region, shop), as column -> cell (columns are two or more spaces apart)."""
    header, *body = output.split("\n\n")[0].splitlines()
    starts = [header.index(name) for name in header.split("  ") if name.strip()]
    names = [name.strip() for name in header.split("  ") if name.strip()]
    parsed = {}
    for line in body:
        cells = [line[start:end].strip() for start, end in zip(starts, starts[1:] + [None])]
        parsed[(cells[0], cells[1])] = dict(zip(names, cells))
    return parsed


def test_stats_prints_each_regions_latest_day_with_its_shops(events_file):
    result = stats("--from-replay", events_file, "--until", "2026-11-19T00:00:00Z")
    assert result.exit_code == 0, result.output
    table = table_rows(result.stdout)
    assert list(table) == [("GB", "all shops"), ("GB", "shop-1"), ("GB", "shop-2"), ("SG", "all shops"),
                           ("SG", "shop-9")]
    assert table[("GB", "all shops")] == {
        "REGION": "GB", "SHOP": "all shops", "WINDOW": "2026-11-18", "CREATED": "4", "PAID": "3",
        "CONVERSION": "75.0%", "GMV": "GBP 89.96", "AOV": "GBP 29.99", "CANCELLED": "3", "LATE DISPATCH": "33.3%",
        "FAILED DELIVERY": "33.3%", "RATING": "3.50", "AFTER-SALES": "50.0%"}
    assert table[("GB", "shop-2")]["LATE DISPATCH"] == "-" and table[("GB", "shop-2")]["PAID"] == "1"
    assert table[("SG", "shop-9")]["WINDOW"] == "2026-11-19"  # Singapore's latest local day
    assert table[("SG", "shop-9")]["GMV"] == "SGD 40.00"
    text = " ".join(result.stdout.split())
    assert "GB all shops, DAY 2026-11-18:" in result.stdout
    assert ("cancellations by reason BUYER_REQUEST_ACCEPTED 1, SELLER_CANCELLED 1, UNPAID_TIMEOUT 1" in text)
    assert "top SKUs by units sku-A 4, sku-B 1" in text and "top SKUs by sales GBP sku-B 50.00, GBP sku-A 39.96" in text
    assert "after-sales cases by kind RETURN 1" in text and "after-sales rate by kind RETURN 50.0%" in text
    singapore = result.stdout.split("SG all shops, DAY 2026-11-19:")[1]  # only the breakdowns it has
    assert [line.strip().split("  ")[0] for line in singapore.strip().splitlines()] == \
        ["top SKUs by units", "top SKUs by sales"]


def test_stats_by_hour_for_one_shop(events_file):
    result = stats("--from-replay", events_file, "--until", "2026-11-19T00:00:00Z", "--granularity", "hour",
                   "--region", "GB", "--shop", "shop-2")
    assert result.exit_code == 0, result.output
    assert list(table_rows(result.stdout)) == [("GB", "shop-2")]
    # shop-2's last hour with figures: o4's accepted cancellation at 11:45.
    assert table_rows(result.stdout)[("GB", "shop-2")]["WINDOW"] == "2026-11-18 11:00Z"
    assert "GB shop-2, HOUR 2026-11-18 11:00Z:" in result.stdout


def test_stats_draws_orders_and_gmv_as_html_and_png(events_file, tmp_path):
    page, picture = tmp_path / "chart.html", tmp_path / "chart.png"
    for path in (page, picture):
        result = stats("--from-replay", events_file, "--until", "2026-11-19T00:00:00Z", "--chart", path)
        assert result.exit_code == 0, result.output
        assert f"chart of 5 DAY windows written to {path}" in result.stderr
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "</svg>" in text
    # Days 15 (o5), 16 (o6), 18 (GB and SG's 18th) and SG's 19th, and the 17th without orders between;
    # GMV has one line per currency.
    for word in ("orders", "GMV", "created", "paid", "GBP", "SGD", "2026-11-15", "2026-11-16", "2026-11-17",
                 "2026-11-18", "2026-11-19"):
        assert f">{word}<" in text, word
    with Image.open(picture) as image:
        assert (image.format, image.size) == ("PNG", (960, 620))
        assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 5  # drawn on, not blank


def test_stats_refuses_a_chart_it_cannot_draw_and_a_replay_without_until(events_file):
    bad = stats("--from-replay", events_file, "--until", "0", "--chart", "chart.pdf")
    assert bad.exit_code == 2 and ".html or .png" in bad.stderr
    alone = stats("--from-replay", events_file)
    assert alone.exit_code == 2 and "--from-replay and --until go together" in alone.stderr


def test_stats_help_describes_the_command():
    result = stats("--help")
    assert result.exit_code == 0 and result.stdout.startswith("Usage: orderflow stats [OPTIONS]")
    text = " ".join(result.stdout.split())
    for word in ("latest window", "--granularity", "minute|hour|day", "--region", "--shop", "--chart", ".html",
                 ".png", "--from-replay", "--until", "--region-policy"):
        assert word in text, word
