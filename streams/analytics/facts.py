"""Analytics: facts from order steps, and event-time windows over them. No Kafka, no Faust.

`facts(before, after, outputs)` turns one step of an order (what an OrderBook
observer sees) into facts: created, paid, cancelled, handed over in time or
overdue, delivered or failed, reviewed, after-sales case opened. An order
shipped in several packages is handed over (in time) once, when its last
open line is: the ship-by time runs on while some lines wait (PARTIALLY_SHIPPING),
and an order is counted once in late_dispatch_rate, late or in time. Each carries
its event time and an id derived from its cause, so a step repeated after a
crash repeats its ids. `rows` addresses each fact to the two rows it counts
in, its shop and its whole region, so that every row is aggregated in one
place (one partition in the worker) and nothing has to be merged afterwards.

`Aggregator` folds facts into tumbling windows (MINUTE and HOUR aligned to UTC,
DAY = the region's local day) and returns the AnalyticsMetric records whose
value changed. Revisions count per (window, row, metric): every emission of a
metric carries all its rows (all currencies, reasons, SKUs) with the next
revision, so the rows of the highest revision are the metric's value and a SKU
that left a top-10 list disappears with it (`Latest` reads them so).

A window takes late facts (each publishes a correction) until stream time,
the latest fact time seen, passes its end plus its granularity's retention.
Then its state is dropped; a fact for it later is counted as too late and
logged. State lives in a store keyed by expiry time, so it stays bounded by
the retention: `MemoryStore` for replay and tests, the RocksDB-backed table
in the worker (tables/analytics.py).
"""
from __future__ import annotations

import functools
import heapq
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable, Iterator, Protocol
from zoneinfo import ZoneInfo

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy
from orderflow.streams.lifecycle import status as st
from orderflow.streams.lifecycle.order import output_id

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
TOP_SKUS = 10
RATE_PLACES, MONEY_PLACES = Decimal("0.0001"), Decimal("0.01")


@dataclass(frozen=True)
class Granularity:
    name: str
    retention: int  # how long after its end (in stream time) a window still takes late facts, in ms


GRANULARITIES = (Granularity("MINUTE", HOUR_MS), Granularity("HOUR", DAY_MS), Granularity("DAY", 3 * DAY_MS))


# --- facts ----------------------------------------------------------------------------------------------------------

def facts(before: dict | None, after: dict | None, outputs: list[dict]) -> list[dict]:
    """The facts of one step of an order, in the order they took effect."""
    order = after if after is not None else before
    if order is None or order["status"] is None:
        return []  # only held events so far, or given up on: nothing happened to an order
    found = [fact for output in outputs for fact in _facts_of(output, order)]
    if after is not None and len(after["reviews"]) > len(before["reviews"] if before else ()):
        # A review changes no status and raises no alert; an order has at most one.
        review = after["reviews"][-1]
        found.append(_fact(order, "REVIEW_POSTED", output_id(order["order_id"], "REVIEW_POSTED", 0), review["at"],
                           rating=review["rating"]))
    return found


_LINE_FIELDS = ("sku_id", "quantity", "unit_price")
_TO_SHIP = (st.AWAITING_SHIPMENT, st.PARTIALLY_SHIPPING)  # open lines wait to be handed over
_HANDED_OVER = (st.AWAITING_COLLECTION, st.IN_TRANSIT, st.DELIVERED)


def _facts_of(output: dict, order: dict) -> list[dict]:
    def fact(kind: str, **fields) -> dict:
        return _fact(order, kind, output["output_id"], output["at"], **fields)

    if output["output"] == "status_change":
        reason = output["reason"]
        if reason == "CREATED":
            return [fact("ORDER_CREATED")]
        if reason == "PAID":
            items = [{name: item[name] for name in _LINE_FIELDS} for item in order["line_items"]]
            return [fact("ORDER_PAID", currency=order["currency"], amount=order["paid_amount"], line_items=items)]
        if output["to_status"] == st.CANCELLED:
            return [fact("ORDER_CANCELLED", reason=reason, initiator=output.get("initiator"),
                         cancel_reason=output.get("cancel_reason"))]
        found = []
        if output.get("from_status") in _TO_SHIP and output["to_status"] in _HANDED_OVER \
                and not order.get("late_dispatched"):
            # Every open line handed over, once per order: by its last package (AWAITING_SHIPMENT>PARTIALLY_SHIPPING,
            # the first of several, is not the hand-over) or by the lines left to ship cancelled (then COLLECTED,
            # or DELIVERED). A late one was counted when its ship-by time passed.
            cause = output["output_id"] if reason != "DELIVERED" else \
                output_id(output["output_id"], "SHIPPED_IN_TIME", 0)  # the DELIVERED fact has the change's own id
            found.append(_fact(order, "SHIPPED_IN_TIME", cause, output["at"]))
        if reason == "DELIVERED":
            found.append(fact("DELIVERED"))
        return found
    if output["output"] == "case_update" and output["to_state"] == "REFUNDED":
        case = next(case for case in order["after_sales"] if case["case_id"] == output["case_id"])
        return [fact("AFTER_SALES_REFUNDED", case_kind=case["kind"], reason=case["reason"],
                     currency=order["currency"], amount=output["amount"])]
    if output["output"] == "alert":
        if output["kind"] in ("SHIP_BY_OVERDUE", "DELIVERY_FAILED"):
            return [fact(output["kind"])]  # DELIVERY_FAILED: each failed delivery of each package
        if output["kind"] == "AFTER_SALES_OPENED":
            return [fact("AFTER_SALES_OPENED", case_kind=output["detail"]["case_kind"],
                         reason=output["detail"].get("reason"))]
    return []


def _fact(order: dict, kind: str, fact_id: str, at: int, **fields) -> dict:
    return {"fact_id": fact_id, "kind": kind, "at": at, "order_id": order["order_id"], "region": order["region"],
            "shop_id": order["shop_id"], **fields}


def rows(fact: dict) -> list[dict]:
    """The fact as counted in its shop's row and in its region's row (shop_id None)."""
    return [fact, {**fact, "shop_id": None}]


def row_key(fact: dict) -> bytes:
    """Kafka key of a fact or metric: its row, so a row is aggregated on one partition."""
    return f"{fact['region']}|{fact['shop_id'] or ''}".encode()


def by_row(facts: Iterable[dict]) -> dict[bytes, list[dict]]:
    """Fact copies grouped by row key (see rows), each group in order: one message per row."""
    grouped: dict[bytes, list[dict]] = {}
    for fact in facts:
        grouped.setdefault(row_key(fact), []).append(fact)
    return grouped


# --- windows --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    granularity: str
    start: int  # inclusive, UTC ms
    end: int  # exclusive
    expires: int  # stream time at which its state is dropped


def windows_of(at: int, zone: tzinfo) -> list[Window]:
    """The MINUTE, HOUR and DAY windows that contain `at`; DAY is the local day in `zone`."""
    found = []
    for granularity in GRANULARITIES:
        if granularity.name == "DAY":
            day = datetime.fromtimestamp(at / 1000, zone).date()
            start, end = _midnight(day, zone), _midnight(day + timedelta(days=1), zone)
        else:
            size = MINUTE_MS if granularity.name == "MINUTE" else HOUR_MS
            start = at - at % size
            end = start + size
        found.append(Window(granularity.name, start, end, end + granularity.retention))
    return found


def _midnight(day, zone: tzinfo) -> int:
    return int(datetime.combine(day, time(), zone).timestamp() * 1000)


def zones(policy: Policy) -> Callable[[str], tzinfo]:
    """Region -> its time zone from the region policy (a DAY window is a local day)."""
    @functools.cache
    def zone_of(region: str) -> tzinfo:
        return ZoneInfo((policy.for_region(region) or policy.default).timezone)
    return zone_of


# --- the aggregator -------------------------------------------------------------------------------------------------

class Store(Protocol):
    """Aggregator state: JSON-ready values under (expiry time, key), and the stream time."""
    time: int | None

    def get(self, expires: int, key: str) -> dict | None: ...

    def put(self, expires: int, key: str, value: dict) -> None: ...

    def expire(self, now: int) -> int:
        """Drop every entry that expires at or before `now`; return how many."""


class MemoryStore:
    """A Store in memory (replay, tests)."""

    def __init__(self) -> None:
        self.time: int | None = None
        self.entries: dict[int, dict[str, dict]] = {}  # expiry time -> key -> value
        self._expiries: list[int] = []  # heap of the keys of `entries`

    def get(self, expires: int, key: str) -> dict | None:
        return self.entries.get(expires, {}).get(key)

    def put(self, expires: int, key: str, value: dict) -> None:
        if expires not in self.entries:
            self.entries[expires] = {}
            heapq.heappush(self._expiries, expires)
        self.entries[expires][key] = value

    def expire(self, now: int) -> int:
        dropped = 0
        while self._expiries and self._expiries[0] <= now:
            dropped += len(self.entries.pop(heapq.heappop(self._expiries)))
        return dropped

    def __len__(self) -> int:
        return sum(map(len, self.entries.values()))


def _key(*parts) -> str:
    return "\x1f".join(str(part) for part in parts)


class Batch:
    """A Store in front of another for one batch of facts: each entry is read at most once and
    written at most once (when the batch is flushed), and what expired is dropped once, at the
    end. Within a batch this changes nothing the Aggregator sees: it only writes entries of live
    windows (expiring after stream time), and stream time only grows."""

    def __init__(self, store: Store):
        self.store = store
        self.time: int | None = store.time
        self._entries: dict[tuple[int, str], dict | None] = {}
        self._dirty: dict[tuple[int, str], None] = {}  # an ordered set
        self._expire_at: int | None = None

    def get(self, expires: int, key: str) -> dict | None:
        try:
            return self._entries[expires, key]
        except KeyError:
            value = self._entries[expires, key] = self.store.get(expires, key)
            return value

    def put(self, expires: int, key: str, value: dict) -> None:
        self._entries[expires, key] = value
        self._dirty[expires, key] = None

    def expire(self, now: int) -> int:
        self._expire_at = now
        return 0  # counted when flushed

    def flush(self) -> int:
        """Write what changed, then drop what expired; return how many entries were dropped."""
        store, expire_at = self.store, self._expire_at
        if self.time is not None and self.time != store.time:
            store.time = self.time
        for expires, key in self._dirty:
            if expire_at is None or expires > expire_at:  # else it would be dropped at once
                store.put(expires, key, self._entries[expires, key])
        self._entries.clear()
        self._dirty.clear()
        self._expire_at = None
        return 0 if expire_at is None else store.expire(expire_at)


class Aggregator:
    def __init__(self, store: Store, zone_of: Callable[[str], tzinfo]):
        self.store = store
        self.zone_of = zone_of
        # in = applied + duplicates + too_late. missed_windows: windows that had expired when a fact
        # arrived for them (all three for a fact too late); expired: store entries dropped.
        self.tally: Counter = Counter()

    def add(self, fact: dict, limit: int | None = None) -> list[dict]:
        """Count one fact (one row's copy); return the AnalyticsMetric records that changed.

        limit: the caller's clock. Stream time never passes it, so a fact stamped in the
        future cannot expire windows early.
        """
        return self.add_many((fact,), limit)

    def add_many(self, facts: Iterable[dict], limit: int | None = None) -> list[dict]:
        """Count facts in order, as one batch: every metric that changed is returned once, with
        the next revision and its value after the whole batch, and every entry of the store is
        read and written at most once. The state after it is what `add` of each fact leaves;
        the figures (the rows of each metric's highest revision) are the same too, reached
        with fewer revisions. All facts must share the store's stream time (one partition)."""
        batch = Batch(self.store)
        touched: dict[tuple[int, str], tuple] = {}  # window entry -> (window, region, shop, head, rows before)
        for fact in facts:
            self._add(batch, touched, fact, limit)
        records = self._publish(batch, touched)
        self.tally["expired"] += batch.flush()
        return records

    def _add(self, store: Batch, touched: dict, fact: dict, limit: int | None) -> None:
        self.tally["in"] += 1
        now = store.time
        arrived = fact["at"] if limit is None else min(fact["at"], limit)
        if now is None or arrived > now:
            store.expire(arrived)
            store.time = now = arrived
        windows = windows_of(fact["at"], self.zone_of(fact["region"]))
        live = [window for window in windows if window.expires > now]
        if not live:
            self.tally["too_late"] += 1
            # Counted, not logged one by one: a catch-up can bring thousands; the worker reports the count.
            self.tally["missed_windows"] += len(windows)
            return
        # A repeated fact has the same windows: its id is remembered as long as the longest of them lives.
        seen = (max(window.expires for window in windows), _key("seen", fact["region"], fact["shop_id"] or "",
                                                               fact["fact_id"]))
        if store.get(*seen) is not None:
            self.tally["duplicates"] += 1
            return
        self.tally["missed_windows"] += len(windows) - len(live)
        for window in live:
            self._count(store, touched, window, fact)
        store.put(*seen, {})
        self.tally["applied"] += 1

    def _count(self, store: Batch, touched: dict, window: Window, fact: dict) -> None:
        region, shop = fact["region"], fact["shop_id"]
        key = _key("window", window.granularity, window.start, region, shop or "")
        entry = touched.get((window.expires, key))
        if entry is None:
            entry = touched[window.expires, key] = (window, region, shop, store.get(window.expires, key) or {}, {})
        head, before = entry[3], entry[4]
        counter, affected = _COUNTERS[fact["kind"]]
        for metric in affected:
            if metric not in before:  # its rows before the batch
                before[metric] = _METRICS[metric](head)
        counter(head, fact)
        if fact["kind"] == "ORDER_PAID":
            self._count_skus(store, window, key, head, fact)

    @staticmethod
    def _publish(store: Batch, touched: dict) -> list[dict]:
        """The records of every metric whose rows the batch changed, each with its next revision."""
        records = []
        for (expires, key), (window, region, shop, head, before) in touched.items():
            revisions = head.setdefault("revisions", {})
            for metric, was in before.items():
                found = _METRICS[metric](head)
                if not found or found == was:
                    continue
                revision = revisions[metric] = revisions.get(metric, 0) + 1
                records += [{"output_id": output_id(key, f"{metric}@{revision}", n), "window_start": window.start,
                             "window_end": window.end, "granularity": window.granularity, "region": region,
                             "shop_id": shop, "metric": metric, "dimension": dimension, "value": value,
                             "revision": revision}
                            for n, (dimension, value) in enumerate(found)]
            store.put(expires, key, head)
        return records

    @staticmethod
    def _count_skus(store: Batch, window: Window, window_key: str, head: dict, fact: dict) -> None:
        """Totals per SKU live in entries of their own, so a window's head stays small;
        the head keeps the top lists."""
        currency = fact["currency"]
        top_sales = head.setdefault("top_sales", {})
        for item in fact["line_items"]:
            key = _key("sku", window_key, item["sku_id"])
            totals = store.get(window.expires, key) or {"units": 0, "sales": {}}
            totals["units"] += item["quantity"]
            sales = Decimal(totals["sales"].get(currency, 0)) + item["quantity"] * Decimal(item["unit_price"])
            totals["sales"][currency] = str(sales)
            store.put(window.expires, key, totals)
            head["top_units"] = _ranked(head.get("top_units", []), item["sku_id"], totals["units"])
            top_sales[currency] = _ranked(top_sales.get(currency, []), item["sku_id"], str(sales))


def _ranked(top: list, sku: str, total) -> list:
    """The top list once `sku`'s total grew to `total`. Exact with the totals of only TOP_SKUS
    SKUs at hand: totals only grow, so a SKU outside the list can only overtake one inside
    when its own total changes, which is when it is offered here."""
    entries = [entry for entry in top if entry[0] != sku] + [[sku, total]]
    entries.sort(key=lambda entry: (-Decimal(entry[1]), entry[0]))
    return entries[:TOP_SKUS]


def _inc(head: dict, name: str, key: str | None = None) -> None:
    if key is None:
        head[name] = head.get(name, 0) + 1
    else:
        counts = head.setdefault(name, {})
        counts[key] = counts.get(key, 0) + 1


def _paid(head: dict, fact: dict) -> None:
    currency = fact["currency"]
    _inc(head, "paid", currency)
    gmv = head.setdefault("gmv", {})
    gmv[currency] = str(Decimal(gmv.get(currency, 0)) + Decimal(fact["amount"]))


def _cancelled(head: dict, fact: dict) -> None:
    _inc(head, "cancelled_by_reason", fact["reason"])
    if fact["initiator"]:
        _inc(head, "cancelled_by_initiator", fact["initiator"])
    if fact.get("cancel_reason"):  # facts written before v2 have none
        _inc(head, "cancelled_by_cancel_reason", fact["cancel_reason"])


def _refunded(head: dict, fact: dict) -> None:
    """Refunded amounts per currency, case kind and the buyer's reason."""
    refunded = head.setdefault("refunded", {})
    key = f"{fact['currency']}:{fact['case_kind']}:{fact['reason']}"
    refunded[key] = str(Decimal(refunded.get(key, 0)) + Decimal(fact["amount"]))


def _reviewed(head: dict, fact: dict) -> None:
    _inc(head, "reviews")
    head["rating_sum"] = head.get("rating_sum", 0) + fact["rating"]


def _average_order_value(head: dict) -> list:
    return [(currency, _fixed(Decimal(gmv) / head["paid"][currency], MONEY_PLACES))
            for currency, gmv in sorted(head.get("gmv", {}).items())]


def _average_rating(head: dict) -> list:
    reviews = head.get("reviews", 0)
    return [(None, _fixed(Decimal(head["rating_sum"]) / reviews, MONEY_PLACES))] if reviews else []


def _after_sales_rate(counted: str) -> Callable[[dict], list]:
    """Cases opened per order delivered, by the dimension the head counts them under."""
    def rate(head: dict) -> list:
        delivered = head.get("delivered", 0)
        return [(key, _fixed(Decimal(n) / delivered, RATE_PLACES))
                for key, n in sorted(head.get(counted, {}).items())] if delivered else []
    return rate


def _opened(head: dict, fact: dict) -> None:
    _inc(head, "after_sales", fact["case_kind"])
    if fact.get("reason"):  # facts written before v2 have none
        _inc(head, "after_sales_by_reason", f"{fact['case_kind']}:{fact['reason']}")


def _dispatches(head: dict) -> int:
    return head.get("ship_by_overdue", 0) + head.get("shipped_in_time", 0)


def _deliveries(head: dict) -> int:
    return head.get("delivery_failed", 0) + head.get("delivered", 0)


# Each metric's rows from a window's head, in publishing order (what they mean: README, Analytics).
_METRICS: dict[str, Callable[[dict], list[tuple[str | None, str]]]] = {
    "orders_created": lambda head: _count(head.get("created", 0)),
    "orders_paid": lambda head: _count(sum(head.get("paid", {}).values())),
    "gmv": lambda head: sorted(head.get("gmv", {}).items()),
    "average_order_value": _average_order_value,
    "payment_conversion": lambda head: _ratio(sum(head.get("paid", {}).values()), head.get("created", 0)),
    "cancellations": lambda head: _count(sum(head.get("cancelled_by_reason", {}).values())),
    "cancellations_by_reason": lambda head: _counts(head.get("cancelled_by_reason", {})),
    "cancellations_by_initiator": lambda head: _counts(head.get("cancelled_by_initiator", {})),
    "cancellations_by_cancel_reason": lambda head: _counts(head.get("cancelled_by_cancel_reason", {})),
    "late_dispatch_rate": lambda head: _ratio(head.get("ship_by_overdue", 0), _dispatches(head)),
    "delivery_failure_rate": lambda head: _ratio(head.get("delivery_failed", 0), _deliveries(head)),
    "average_rating": _average_rating,
    "after_sales_opened": lambda head: _counts(head.get("after_sales", {})),
    "after_sales_rate": _after_sales_rate("after_sales"),
    "after_sales_rate_by_reason": _after_sales_rate("after_sales_by_reason"),
    "after_sales_refunded": lambda head: sorted(head.get("refunded", {}).items()),
    "top_sku_units": lambda head: [(sku, str(units)) for sku, units in head.get("top_units", [])],
    "top_sku_sales": lambda head: [(f"{currency}:{sku}", sales) for currency, top in
                                   sorted(head.get("top_sales", {}).items()) for sku, sales in top],
}
METRICS = tuple(_METRICS)

# What each kind of fact counts, and the metrics that may change with it (only those are recomputed).
_COUNTERS: dict[str, tuple[Callable[[dict, dict], None], tuple[str, ...]]] = {
    "ORDER_CREATED": (lambda head, fact: _inc(head, "created"), ("orders_created", "payment_conversion")),
    "ORDER_PAID": (_paid, ("orders_paid", "gmv", "average_order_value", "payment_conversion", "top_sku_units",
                           "top_sku_sales")),
    "ORDER_CANCELLED": (_cancelled, ("cancellations", "cancellations_by_reason", "cancellations_by_initiator",
                                     "cancellations_by_cancel_reason")),
    "SHIPPED_IN_TIME": (lambda head, fact: _inc(head, "shipped_in_time"), ("late_dispatch_rate",)),
    "SHIP_BY_OVERDUE": (lambda head, fact: _inc(head, "ship_by_overdue"), ("late_dispatch_rate",)),
    "DELIVERED": (lambda head, fact: _inc(head, "delivered"), ("delivery_failure_rate", "after_sales_rate",
                                                                "after_sales_rate_by_reason")),
    "DELIVERY_FAILED": (lambda head, fact: _inc(head, "delivery_failed"), ("delivery_failure_rate",)),
    "REVIEW_POSTED": (_reviewed, ("average_rating",)),
    "AFTER_SALES_REFUNDED": (_refunded, ("after_sales_refunded",)),
    "AFTER_SALES_OPENED": (_opened, ("after_sales_opened", "after_sales_rate", "after_sales_rate_by_reason")),
}


def metric_rows(head: dict, metrics: Iterable[str] = METRICS) -> dict[str, list[tuple[str | None, str]]]:
    """The metrics that have a value in the window, as (dimension, value) rows. A count appears
    once there is something to count, a ratio once its denominator is not zero."""
    return {metric: found for metric in metrics if (found := _METRICS[metric](head))}


def _count(n: int) -> list:
    return [(None, str(n))] if n else []


def _counts(counts: dict[str, int]) -> list:
    return [(key, str(n)) for key, n in sorted(counts.items())]


def _ratio(numerator: int, denominator: int) -> list:
    return [(None, _fixed(Decimal(numerator) / denominator, RATE_PLACES))] if denominator else []


def _fixed(value: Decimal, places: Decimal) -> str:
    return str(value.quantize(places, ROUND_HALF_UP))


# --- reading the metrics back ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowRow:
    """One row of the statistics in one window."""
    granularity: str
    window_start: int
    window_end: int
    region: str
    shop_id: str | None

    def sort_key(self) -> tuple:
        """Time, then region, its region-wide row before its shops."""
        return self.window_start, self.granularity, self.region, self.shop_id is not None, self.shop_id or ""


class Latest:
    """The current figures, from AnalyticsMetric records in any order, redelivered ones included:
    each metric of each window row is the set of rows with its highest revision."""

    def __init__(self) -> None:
        self._best: dict[tuple[WindowRow, str], tuple[int, dict]] = {}

    def add(self, record: dict) -> None:
        row = WindowRow(record["granularity"], record["window_start"], record["window_end"], record["region"],
                        record["shop_id"])
        revision, found = self._best.get((row, record["metric"]), (0, {}))
        if record["revision"] > revision:
            self._best[(row, record["metric"])] = (record["revision"], {record["dimension"]: record["value"]})
        elif record["revision"] == revision:
            found[record["dimension"]] = record["value"]

    def windows(self) -> dict[WindowRow, dict[str, list[tuple[str | None, str]]]]:
        """Every window row with its metrics (in METRICS order) and their (dimension, value) rows."""
        grouped: dict[WindowRow, dict] = {}
        for (row, metric), (_, found) in sorted(self._best.items(),
                                                key=lambda item: (item[0][0].sort_key(), METRICS.index(item[0][1]))):
            grouped.setdefault(row, {})[metric] = list(found.items())
        return grouped


# --- over a replay --------------------------------------------------------------------------------------------------

def replay_records(lines: Iterable[Line], until: int, policy: Policy,
                   aggregator: Aggregator | None = None) -> Iterator[dict]:
    """The AnalyticsMetric records a worker would publish for recorded events, without Kafka:
    the replay's OrderBook observed as the worker's is, with one stream time for all rows."""
    book = OrderBook({}, policy)
    aggregator = aggregator or Aggregator(MemoryStore(), zones(policy))
    published: list[dict] = []

    def observe(before: dict | None, after: dict | None, outputs: list[dict]) -> None:
        for fact in facts(before, after, outputs):
            for copy in rows(fact):
                published.extend(aggregator.add(copy))

    book.observers.append(observe)
    for _ in replay(lines, until, policy, book):
        yield from published
        published.clear()
    yield from published
