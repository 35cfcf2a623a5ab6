"""Order queries: the seller centre's filters, sorts and cursor pages over order dicts.

No Faust and no HTTP: the API feeds this module each worker's orders (and the
pages other workers answered); tests feed it plain dicts. Parameters arrive as
the strings of a query string and are checked here, so every bad value is a
`QueryError` naming its parameter.

Ranges are half-open: `created_from` is included, `created_to` is not. A
parameter may list several values separated by commas (`status=UNPAID,CANCELLED`):
any of them matches; different parameters must all match.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import itertools
import json
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Iterable, Mapping

from orderflow.streams.api import urgency
from orderflow.streams.api.export import line_packages, shown_address
from orderflow.streams.book.replay import parse_time
from orderflow.streams.lifecycle import lines as order_lines
from orderflow.streams.lifecycle import shipping
from orderflow.streams.lifecycle import status as st
from orderflow.streams.lifecycle.contract import MAX_AMOUNT
from orderflow.streams.lifecycle.payment import is_reminder
from orderflow.streams.lifecycle.shipping import ship_by_time

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_SORT = "-created_at"
# Each sort is listed per status (tables/listing.py): a page seeks to its place instead of scanning.
SORTS = ("created_at", "-created_at", "paid_at", "-paid_at", "total_amount", "-total_amount", "ship_by", "-ship_by",
         "order_id")
FILTER_PARAMS = ("tab", "status", "created_from", "created_to", "paid_from", "paid_to", "region", "shop_id",
                 "sku_id", "condition", "due", "action_needed", "now")
PAGE_PARAMS = ("sort", "limit", "cursor")


class QueryError(ValueError):
    """A parameter with a value the API cannot use; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


def check_known(params: Mapping[str, str], known: Iterable[str]) -> None:
    """A misspelt parameter would silently widen the query: refuse it."""
    known = set(known)
    for name in params:
        if name not in known:
            raise QueryError(name, f"unknown parameter; known: {', '.join(sorted(known))}")


def _values(params: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    if name not in params:
        return None
    values = tuple(sorted({v.strip() for v in params[name].split(",") if v.strip()}))
    if not values:
        raise QueryError(name, "empty value")
    return values


def _choices(params: Mapping[str, str], name: str, allowed: Mapping[str, str]) -> tuple[str, ...] | None:
    """Values looked up in `allowed` (normalised spelling -> canonical name)."""
    values = _values(params, name)
    if values is None:
        return None
    for value in values:
        if _normal(value) not in allowed:
            names = ", ".join(dict.fromkeys(allowed.values()))
            raise QueryError(name, f"unknown value {value!r}; use one of {names}")
    return tuple(sorted({allowed[_normal(value)] for value in values}))


def _normal(text: str) -> str:
    return text.strip().lower().replace("_", " ").replace("-", " ")


_TABS = {_normal(tab): tab for tab in st.TABS}
_STATUSES = {_normal(status): status for status in st.STATUSES}
_CONDITIONS = {_normal(condition): condition for condition in st.CONDITIONS}
_DUE = {_normal(view): view for view in urgency.DUE}


def flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "0").lower()
    if value not in ("0", "1", "false", "true"):
        raise QueryError(name, f"use 1 or 0, not {value!r}")
    return value in ("1", "true")


def _time(params: Mapping[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return parse_time(params[name])
    except ValueError as exc:
        raise QueryError(name, str(exc)) from None


def _in_range(value: int | None, start: int | None, end: int | None) -> bool:
    if start is None and end is None:
        return True
    return value is not None and (start is None or value >= start) and (end is None or value < end)


@dataclass(frozen=True)
class Filters:
    """What an order must be to be listed, counted or exported. Values are sorted tuples
    (not sets) so that the repr, hashed into cursors, is the same in every process."""
    statuses: tuple[str, ...] | None = None  # from `tab` and `status`: an order must satisfy both
    created_from: int | None = None
    created_to: int | None = None
    paid_from: int | None = None
    paid_to: int | None = None
    regions: tuple[str, ...] | None = None
    shops: tuple[str, ...] | None = None
    skus: tuple[str, ...] | None = None
    conditions: tuple[str, ...] | None = None
    due: tuple[str, ...] | None = None  # urgency views (urgency.py): any of them
    action_needed: bool = False
    # The time the urgency views are judged at (the worker's clock, or `now=`): not part of what a
    # cursor was made for, since it moves on between pages.
    now: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], now: int | None = None) -> "Filters":
        statuses = None
        tabs = _choices(params, "tab", _TABS)
        if tabs is not None:
            statuses = {status for tab in tabs for status in st.TABS[tab]}
        named = _choices(params, "status", _STATUSES)
        if named is not None:
            statuses = set(named) if statuses is None else statuses & set(named)
        due = _choices(params, "due", _DUE)
        if due is not None:  # no order of another status is in the views
            possible = {status for view in due for status in urgency.DUE_STATUSES[view]}
            statuses = possible if statuses is None else statuses & possible
        now = _time(params, "now") if "now" in params else now
        if (due is not None) and now is None:
            raise QueryError("due", "needs the time it is judged at: `now`")
        return cls(
            statuses=None if statuses is None else tuple(sorted(statuses)),
            created_from=_time(params, "created_from"), created_to=_time(params, "created_to"),
            paid_from=_time(params, "paid_from"), paid_to=_time(params, "paid_to"),
            regions=_values(params, "region"), shops=_values(params, "shop_id"), skus=_values(params, "sku_id"),
            conditions=_choices(params, "condition", _CONDITIONS), due=due,
            action_needed=flag(params, "action_needed"), now=now,
        )

    @property
    def by_status_only(self) -> bool:
        """Whether only the status (tab) matters: counts per status answer it."""
        return replace(self, statuses=None, now=None) == Filters()

    def accepts(self, order: dict) -> bool:
        status = order.get("status")
        if status is None:  # only events held for an order not created yet
            return False
        return ((self.statuses is None or status in self.statuses)
                and _in_range(order.get("created_at"), self.created_from, self.created_to)
                and _in_range(order.get("paid_at"), self.paid_from, self.paid_to)
                and (self.regions is None or order.get("region") in self.regions)
                and (self.shops is None or order.get("shop_id") in self.shops)
                and (self.skus is None
                     or any(item.get("sku_id") in self.skus for item in order.get("line_items") or ()))
                and (self.conditions is None or any(c in self.conditions for c in order.get("conditions") or ()))
                and (self.due is None or any(urgency.is_due(order, view, self.now) for view in self.due))
                and (not self.action_needed or urgency.action_needed(order)))


def _sort_value(order: dict, field: str):
    """The value sorted on; None sorts last in both directions."""
    if field == "order_id":
        return 0
    if field == "ship_by":  # an order as the API shows it carries its ship-by time (its deadlines as a list)
        return order["ship_by"] if "ship_by" in order else ship_by_time(order)
    value = order.get(field)
    if field == "total_amount" and value is not None:
        return Decimal(value)
    return value


def _cursor_value(field: str, raw):
    """The sort value a cursor carried, checked for its field's type and range (what an order can
    hold, and so what the listing can seek to)."""
    if field == "order_id":
        return 0
    if raw is None:
        return None
    if field == "total_amount" and isinstance(raw, str) and 0 <= Decimal(raw) <= MAX_AMOUNT:
        return Decimal(raw)
    if field != "total_amount" and isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2 ** 63:
        return raw
    raise ValueError(raw)


@dataclass(frozen=True)
class Query:
    """One page of a listing: filters, sort, page size, and where the previous page ended."""
    filters: Filters = Filters()
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    after: tuple | None = None  # sort key of the last order of the previous page

    @classmethod
    def parse(cls, params: Mapping[str, str], now: int | None = None) -> "Query":
        sort = params.get("sort", DEFAULT_SORT)
        if sort not in SORTS:
            raise QueryError("sort", f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        raw_limit = params.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw_limit)
        except ValueError:
            raise QueryError("limit", f"not a number: {raw_limit!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"{limit} is out of range 1..{MAX_LIMIT}")
        query = cls(Filters.parse(params, now), sort, limit)
        return query.resume(params["cursor"]) if "cursor" in params else query

    @property
    def field(self) -> str:
        return self.sort.lstrip("-")

    def _key(self, value, order_id: str) -> tuple:
        if value is None:
            return (1, 0, order_id)
        return (0, -value if self.descending else value, order_id)

    def key(self, order: dict) -> tuple:
        """Total order of the listing: the sort value, then the order id (so ties page stably)."""
        return self._key(_sort_value(order, self.field), order["order_id"])

    def key_of(self, value, order_id: str) -> tuple:
        """The same order for a sort value as an index gives it (None: the order has none)."""
        return self._key(0 if self.field == "order_id" else value, order_id)

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def after_value(self) -> tuple | None:
        """Where the previous page ended, as (sort value or None, order id)."""
        if self.after is None:
            return None
        absent, signed, order_id = self.after
        if absent or self.field == "order_id":
            return None, order_id
        return (-signed if self.descending else signed), order_id

    def accepts(self, order: dict) -> bool:
        return self.filters.accepts(order) and (self.after is None or self.key(order) > self.after)

    def select(self, orders: Iterable[dict]) -> list[dict]:
        """The first limit + 1 accepted orders in sort order (one more than a page shows,
        to know whether another page follows). Feed it chunk by chunk with the last result
        chained in front to scan a large store piecewise."""
        return heapq.nsmallest(self.limit + 1, filter(self.accepts, orders), key=self.key)

    def page(self, candidates: list[dict], more: bool = False) -> tuple[list[dict], str | None]:
        """Cut sorted candidates to a page; the cursor is set when another page follows."""
        shown = candidates[:self.limit]
        more = more or len(candidates) > self.limit
        return shown, (self.cursor(shown[-1]) if more and shown else None)

    def merge(self, pages: Iterable[list[dict]], more: bool = False) -> tuple[list[dict], str | None]:
        """One page from the sorted pages several workers answered for the same query."""
        merged = list(itertools.islice(heapq.merge(*pages, key=self.key), self.limit + 1))
        return self.page(merged, more)

    def _fingerprint(self) -> str:
        # A cursor only makes sense for the filters and sort it was made for; the page size may change.
        return hashlib.blake2b(repr((replace(self.filters, now=None), self.sort)).encode(), digest_size=8).hexdigest()

    def cursor(self, last: dict) -> str:
        value = _sort_value(last, self.field)
        payload = {"q": self._fingerprint(), "v": str(value) if isinstance(value, Decimal) else value,
                   "id": last["order_id"]}
        return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")

    def resume(self, cursor: str) -> "Query":
        try:
            payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            fingerprint, raw, order_id = payload["q"], payload["v"], payload["id"]
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError):
            raise QueryError("cursor", "not a cursor this API gave out") from None
        if fingerprint != self._fingerprint():
            raise QueryError("cursor", "was given out for other filters or another sort")
        try:
            if not isinstance(order_id, str):
                raise ValueError(order_id)
            return replace(self, after=self._key(_cursor_value(self.field, raw), order_id))
        except (ValueError, InvalidOperation):
            raise QueryError("cursor", "not a cursor this API gave out") from None


# --- what the API shows of an order ----------------------------------------------------------------------------

def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SUMMARY_FIELDS = ("order_id", "status", "region", "shop_id", "buyer_id", "currency", "total_amount",
                   "created_at", "paid_at", "shipped_at", "delivered_at", "completed_at", "cancelled_at",
                   "cancel_reason")
_DETAIL_FIELDS = _SUMMARY_FIELDS + ("channel", "line_items", "paid_amount", "payment_method", "refund_due",
                                    "collected_at", "cancel_initiator", "cancel_detail", "history", "tracking",
                                    "reviews", "after_sales", "cancelled_lines")


def next_deadline(order: dict) -> dict | None:
    """The order's next deadline that a seller watches (payment reminders are the buyer's); a ship-by
    that passed stays one until the order ships."""
    due = [(at, name) for name, at in (order.get("deadlines") or {}).items() if not is_reminder(name)]
    if (ship_by := ship_by_time(order)) is not None:
        due.append((ship_by, "SHIP_BY"))
    if not due:
        return None
    at, name = min(due)
    return {"name": name, "due_at": at}


def _shown(order: dict, fields: tuple[str, ...]) -> dict:
    """What a listing row and the detail both show: `fields`, the tab, the ship-by time (sorted on),
    the lines with the package each went in (None until shipped), and the first package's carrier and
    tracking number as `carrier` and `tracking_number` (as before orders shipped in packages)."""
    every = shipping.packages(order)
    first = every[0] if every else {}
    package_of = line_packages(order)
    return {**{name: order.get(name) for name in fields},
            "carrier": first.get("carrier"), "tracking_number": first.get("tracking_number"),
            "tab": st.TAB_OF[order["status"]], "late_dispatched": bool(order.get("late_dispatched")),
            "ship_by": ship_by_time(order),
            "lines": [{"line_id": line, "sku_id": item.get("sku_id"), "product_name": item.get("product_name"),
                       "quantity": item.get("quantity"), "status": order_lines.status_of(order, line),
                       "package_id": package_of[line]["package_id"] if line in package_of else None}
                      for line, item in zip(order_lines.line_ids(order), order.get("line_items") or ())]}


def summary(order: dict) -> dict:
    """A row of a listing: no address, no history; the buyer masked."""
    items = order.get("line_items") or ()
    return {**_shown(order, _SUMMARY_FIELDS), "conditions": sorted(order.get("conditions") or ()),
            "items": sum(item.get("quantity", 0) for item in items),
            "sku_ids": sorted({item.get("sku_id") for item in items}),
            "buyer": (shown_address(order) or {}).get("recipient_name"),
            "next_deadline": next_deadline(order)}


def packages(order: dict) -> list[dict]:
    """The order's packages as the detail shows them, each with its own tracking entries."""
    return [{"package_id": package["package_id"], "line_ids": list(package["line_ids"]),
             "carrier": package.get("carrier"), "tracking_number": package.get("tracking_number"),
             "status": package.get("status"), "shipped_at": package.get("shipped_at"),
             "delivered_at": package.get("delivered_at"), "failed": package.get("failed"),
             "tracking": shipping.package_tracking(order, package["package_id"])}
            for package in shipping.packages(order)]


def detail(order: dict, include_personal_data: bool = False) -> dict:
    """Everything about one order but the engine's bookkeeping; the address masked unless asked for."""
    address = shown_address(order, include_personal_data)
    return {**_shown(order, _DETAIL_FIELDS), "conditions": dict(order.get("conditions") or {}),
            "shipping_address": address, "packages": packages(order),
            "deadlines": [{"name": name, "due": iso_utc(due), "due_at": due}
                          for name, due in sorted(order.get("deadlines", {}).items(), key=lambda d: (d[1], d[0]))]}


def counts(statuses: Counter) -> dict:
    """Counts per seller tab and per status, from the number of orders in each status."""
    return {"total": sum(statuses.values()),
            "tabs": {tab: sum(statuses[s] for s in members) for tab, members in st.TABS.items()},
            "statuses": {status: statuses[status] for status in st.STATUSES}}
