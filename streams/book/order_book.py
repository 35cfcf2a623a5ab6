"""The order book: the lifecycle core over a store of orders, with its deadline index.

One class for every runner: the replay keeps orders in a dict and its deadline
index in memory (streams/book/timers.py); the live worker keeps both in RocksDB
(tables/json_table.py, tables/deadlines.py), one batch of one partition at a
time. Both call `apply` for an event and `fire_due` when deadlines may be due;
the book is the one place that keeps the index in step with the orders.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, MutableMapping, Protocol

from orderflow.streams.book.timers import DeadlineIndex
from orderflow.streams.lifecycle import Policy, Step, advance, answer, apply, retained
from orderflow.streams.lifecycle.confirmation import stock_requests


class Index(Protocol):
    """What the book needs of a deadline index (streams/book/timers.py, tables/deadlines.py)."""
    def track(self, order_id: str, before: dict[str, int], after: dict[str, int]) -> None: ...
    def pop_due(self, now: int) -> list[tuple[int, str]]: ...


def _at(output: dict) -> int:
    return output["at"]


class OrderBook:
    def __init__(self, orders: MutableMapping[str, dict], policy: Policy, index: Index | None = None):
        self.orders = orders
        self.policy = policy
        self.index = index if index is not None else DeadlineIndex()
        # Reconciles as in = applied + dead_lettered + duplicates + buffered.
        self.tally: Counter = Counter()
        # Called with (order before, order after, outputs) for every step that changed
        # an order: derived views (analytics) follow the book without touching the core.
        self.observers: list[Callable[[dict | None, dict | None, list[dict]], None]] = []

    def apply(self, event: dict, now: int) -> list[dict]:
        """Apply an upstream event at time `now`."""
        order_id = event.get("order_id")
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        step = apply(order, event, now, self.policy)
        self.tally["in"] += 1
        self.tally.update(step.tally)
        if step.tally["duplicates"] and step.order is order is not None:
            # A copy read again after a crash: the order may have been stored (or restored from its
            # changelog) ahead of its deadline index. Indexing its deadlines again repairs that (idempotent).
            self.index.track(order_id, {}, order["deadlines"])
        return self._keep(order_id, order, step)

    def fire(self, order_id: str, now: int) -> list[dict]:
        """Fire the order's deadlines that are due by `now`."""
        order = self.orders.get(order_id)
        if order is None:
            return []
        step = advance(order, now, self.policy)
        self.tally.update(step.tally)
        if step.order is order:
            # Nothing was due: the entry was stale, left by a batch whose orders became durable and whose
            # index did not (a crash between their changelogs). Its order lacks the entries that batch
            # set; indexing its deadlines again repairs that (idempotent; all of them are later than now).
            self.index.track(order_id, {}, order["deadlines"])
        return self._keep(order_id, order, step)

    def answer(self, reply: dict) -> list[dict]:
        """The warehouse's answer to one of an order's stock requests."""
        order_id = reply["order_id"]
        order = self.orders.get(order_id)
        return self._keep(order_id, order, answer(order, reply, self.policy))

    def fire_due(self, now: int) -> list[dict]:
        """Fire every indexed deadline due by `now`, across orders, in due order. Each look takes all
        that is due in one pass; a deadline that firing sets already due (a hold's end sets the
        ship-by) comes in the next one, and its outputs are put in their place by time (a stable
        sort: each order's own outputs are in time order already)."""
        outputs: list[dict] = []
        passes = 0
        while due := self.index.pop_due(now):
            passes += 1
            for due_at, order_id in due:
                outputs += self.fire(order_id, due_at)
        if passes > 1:
            outputs.sort(key=_at)
        return outputs

    def count_failed(self) -> None:
        """An input message that never became a step (undecodable, or its step failed) counts in and out."""
        self.tally.update({"in": 1, "dead_lettered": 1})

    def _keep(self, order_id, before: dict | None, step: Step) -> list[dict]:
        """Store the step's order and index its deadlines; return its outputs."""
        if step.order is before:
            return step.outputs
        step.outputs += stock_requests(before, step.order)
        if step.order is None:
            self.orders.pop(order_id, None)
        else:
            self.orders[order_id] = step.order
        self.index.track(order_id, before["deadlines"] if before else {}, step.deadlines)
        # Last: what observers derive (analytics facts) is of a step that was kept.
        for observe in self.observers:
            observe(before, step.order, step.outputs)
        return step.outputs

    def index_orders(self, orders: Iterable[tuple[str, dict]]) -> int:
        """Index the deadlines of stored orders the index does not know, a finished one's retention
        scheduled if it was stored before retention came in; how many orders there were."""
        count = 0
        for order_id, order in orders:
            kept = retained(order, self.policy)
            if kept is not order:
                self.orders[order_id] = kept
            self.index.track(order_id, {}, kept["deadlines"])
            count += 1
        return count
