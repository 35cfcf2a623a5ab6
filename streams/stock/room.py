"""Confirmation, the warehouse's side: stock and catalogue prices per SKU, held units per order line.

Framework-free like the lifecycle core: `StockRoom` works over any mapping (a
dict in a replay, the RocksDB-backed inventory table in a worker). Every key
of one SKU lives on the SKU's partition, so its requests are answered one at
a time: of two orders racing for the last unit exactly one gets it.

Keys: `sku|<sku>` holds the SKU (units on hand, units held, price history,
recent event ids); `hold|<sku>|<order>|<line>` holds one order line's claim
(reserved, or short when the units were not there). A line is all or nothing.
A released or consumed claim stays behind, closed: a worker that takes over a
partition handles its requests again from the last committed offset, and a
RESERVE seen again after its line shipped must not hold the units anew. It is
deleted when its order is forgotten (FORGET, at the end of the order's
retention period, long after any request of it could be read again); a FORGET
of a claim still open releases its units first.

Stock of a SKU the warehouse never reported is not tracked: its requests are
granted without a count (sellers who do not sync stock). Reservations are made
in the order requests reach the SKU's partition; a stock update counts for
requests that come after it.
"""
from __future__ import annotations

import bisect
from collections import Counter
from decimal import Decimal
from typing import MutableMapping

from orderflow.streams.lifecycle import contract
from orderflow.streams.lifecycle.confirmation import CONSUME, FORGET, OUT_OF_STOCK, PRICE_MISMATCH, RESERVE
from orderflow.streams.lifecycle.order import output_id

# How many event ids per SKU are remembered to drop duplicates, and how many
# price changes per SKU and currency are kept to check orders placed before the latest.
RECENT_EVENTS = 256
PRICE_HISTORY = 32


def new_sku(sku_id: str) -> dict:
    return {"sku_id": sku_id, "on_hand": None, "held": 0, "prices": {}, "seen": []}


def price_at(history: list[list], at: int) -> str | None:
    """The catalogue price in force at `at`, from [[since, price], ...] sorted by time."""
    n = bisect.bisect_right([since for since, _ in history], at)
    return history[n - 1][1] if n else None


class StockRoom:
    def __init__(self, store: MutableMapping[str, dict]):
        self.store = store
        # Reconciles as in = applied + dead_lettered + duplicates (warehouse events only).
        self.tally: Counter = Counter()

    def _sku(self, sku_id: str) -> dict:
        return self.store.get(f"sku|{sku_id}") or new_sku(sku_id)

    def apply(self, event: dict) -> list[dict]:
        """A warehouse event (stock set or adjusted, price changed); outputs are dead letters only."""
        self.tally["in"] += 1
        wrong = contract.inventory_problem(event)
        sku = None if wrong else self._sku(event["sku_id"])
        if sku is not None and event["event_id"] in sku["seen"]:
            self.tally["duplicates"] += 1
            return []
        if sku is not None and event["event_type"] == "STOCK_ADJUSTED":
            left = (sku["on_hand"] or 0) + event["delta"]
            if left < 0:
                wrong = f"STOCK_ADJUSTED by {event['delta']} would leave {left} units of {sku['sku_id']} on hand"
        if wrong:
            self.tally["dead_lettered"] += 1
            at = event.get("event_time") if isinstance(event.get("event_time"), int) else None
            return [{"output": "dead_letter", "output_id": output_id("", f"inventory@{event.get('event_id')}", 0),
                     "order_id": None, "at": at or 0, "reason": wrong, "event": event}]
        sku = {**sku, "seen": [*sku["seen"][-(RECENT_EVENTS - 1):], event["event_id"]]}
        kind = event["event_type"]
        if kind == "STOCK_SET":
            sku["on_hand"] = event["quantity"]
        elif kind == "STOCK_ADJUSTED":
            sku["on_hand"] = (sku["on_hand"] or 0) + event["delta"]
        else:
            history = sorted([*sku["prices"].get(event["currency"], []), [event["event_time"], event["unit_price"]]])
            sku["prices"] = {**sku["prices"], event["currency"]: history[-PRICE_HISTORY:]}
        self.store[f"sku|{sku['sku_id']}"] = sku
        self.tally["applied"] += 1
        return []

    def handle(self, request: dict) -> list[dict]:
        """An order line's request (confirmation.stock_requests); answers are its problems only.
        Requests are idempotent: a repeated one changes nothing and gives the same answers."""
        self.tally[f"requests_{request['action'].lower()}"] += 1
        sku = self._sku(request["sku_id"])
        key = f"hold|{sku['sku_id']}|{request['order_id']}|{request['line']}"
        hold = self.store.get(key)
        if request["action"] == RESERVE:
            if hold is None:
                hold = self._reserve(sku, key, request)
            return self._problems(sku, hold, request)
        if hold is not None and not hold.get("closed"):  # a line that holds units or lacked them
            self.store[key] = {**hold, "counted": False, "closed": request["action"]}
            if hold["counted"]:
                sku = {**sku, "held": sku["held"] - hold["quantity"]}
                if request["action"] == CONSUME:
                    sku["on_hand"] -= hold["quantity"]
                self.store[f"sku|{sku['sku_id']}"] = sku
        if request["action"] == FORGET:
            self.store.pop(key, None)
        return []

    def _reserve(self, sku: dict, key: str, request: dict) -> dict:
        quantity = request["quantity"]
        tracked = sku["on_hand"] is not None
        available = sku["on_hand"] - sku["held"] if tracked else None
        reserved = not tracked or quantity <= available
        # counted: the units are part of the SKU's held total (not so while it is not tracked)
        hold = {"quantity": quantity, "reserved": reserved, "counted": tracked and reserved,
                "available": None if reserved else available}  # what a short line found, for its answer
        if hold["counted"]:
            self.store[f"sku|{sku['sku_id']}"] = {**sku, "held": sku["held"] + quantity}
        self.store[key] = hold
        self.tally["reserved" if hold["reserved"] else "short"] += 1
        return hold

    def _problems(self, sku: dict, hold: dict, request: dict) -> list[dict]:
        answer = {"order_id": request["order_id"], "sku_id": sku["sku_id"], "line": request["line"],
                  "at": request["at"], "quantity": request["quantity"], "available": None,
                  "unit_price": request["unit_price"], "catalogue_price": None, "currency": request["currency"]}
        problems = []
        if not hold["reserved"]:
            problems.append({**answer, "problem": OUT_OF_STOCK, "available": hold["available"]})
        catalogue = price_at(sku["prices"].get(request["currency"], []), request["ordered_at"])
        if catalogue is not None and Decimal(catalogue) != Decimal(request["unit_price"]):
            problems.append({**answer, "problem": PRICE_MISMATCH, "catalogue_price": catalogue})
        return problems
