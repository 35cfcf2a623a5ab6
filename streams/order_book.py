"""The order book: the lifecycle core over a store of orders, with its deadline index.

One class for every runner: the replay keeps orders in a dict, the live worker
in a RocksDB-backed Faust table (through tables.json_table.JsonTable). Both
call `apply` for an event and `fire` when a deadline may be due.

The outbox (live worker only): a table write lands in RocksDB at once, while
the step's outputs wait in the producer and the input offset is committed
later still. After a crash in between, the input comes again and finds its
step already applied. So each order keeps the outputs of its steps whose
input is not committed yet (`source` says where that input was read); a
redelivered input (the same topic, partition and offset) publishes them
again, with the same ids, and rewrites the order so its changelog record is
sent too. `settled(source)` says when an entry may go.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, MutableMapping

from .lifecycle import Policy, Step, advance, answer, apply
from .lifecycle.confirmation import stock_requests
from .timers import DeadlineIndex


OUTBOX = "outbox"  # the order's key for outputs not yet settled; not part of its lifecycle state


def without_outbox(order: dict) -> dict:
    return {name: value for name, value in order.items() if name != OUTBOX}


class OrderBook:
    def __init__(self, orders: MutableMapping[str, dict], policy: Policy, index: DeadlineIndex | None = None,
                 settled: Callable[[list], bool] | None = None):
        self.orders = orders
        self.policy = policy
        self.index = index if index is not None else DeadlineIndex()
        # None: no outbox (a replay has no input to commit).
        self.settled = settled
        # Reconciles as in = applied + dead_lettered + duplicates + buffered.
        self.tally: Counter = Counter()
        # Called with (order before, order after, outputs) for every step that changed
        # an order: derived views (analytics) follow the book without touching the core.
        self.observers: list[Callable[[dict | None, dict | None, list[dict]], None]] = []

    def apply(self, event: dict, now: int, source: list | None = None) -> list[dict]:
        """Apply an upstream event; `source` is where it was read (for the outbox)."""
        order_id = event.get("order_id")
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        step = apply(order, event, now, self.policy)
        self.tally["in"] += 1
        self.tally.update(step.tally)
        again = self._unsettled(order, source) if step.tally["duplicates"] else None
        return self._keep(order_id, order, step, source, again)

    def fire(self, order_id: str, now: int, source: list | None = None) -> list[dict]:
        """Fire the order's deadlines that are due by `now` (a timer tick for it)."""
        order = self.orders.get(order_id)
        if order is None:
            return []
        step = advance(order, now, self.policy)
        self.tally.update(step.tally)
        return self._keep(order_id, order, step, source, self._unsettled(order, source))

    def answer(self, reply: dict, source: list | None = None) -> list[dict]:
        """The warehouse's answer to one of an order's stock requests."""
        order_id = reply["order_id"]
        order = self.orders.get(order_id)
        step = answer(order, reply, self.policy)
        return self._keep(order_id, order, step, source, self._unsettled(order, source))

    def fire_due(self, now: int) -> list[dict]:
        """Fire every indexed deadline due by `now`, across orders, in due order."""
        outputs: list[dict] = []
        while (due := self.index.next_due()) is not None and due <= now:
            for due_at, order_id in self.index.pop_due(due):
                outputs += self.fire(order_id, due_at)
        return outputs

    def count_undecodable(self) -> None:
        """An input message that never became an event still counts in and out."""
        self.tally.update({"in": 1, "dead_lettered": 1})

    def _keep(self, order_id, before: dict | None, step: Step, source: list | None,
              again: list[dict] | None) -> list[dict]:
        """Store the step's order; its outputs, after `again` (a redelivered input's earlier outputs;
        None when the input is not one this order took and has not settled)."""
        if again is None:
            again = []
        elif step.order is before:  # the first write may have reached RocksDB but not the changelog
            self.orders[order_id] = before
        if step.order is before:
            return again + step.outputs
        step.outputs += stock_requests(before, step.order)
        for observe in self.observers:
            observe(before, step.order, step.outputs)
        if step.order is None:
            self.orders.pop(order_id, None)
            return again + step.outputs
        if self.settled is not None:
            self._post(step.order, source, step.outputs)
        self.orders[order_id] = step.order
        self.index.track(order_id, step.deadlines)
        return again + step.outputs

    def _unsettled(self, order: dict | None, source: list | None) -> list[dict] | None:
        """The outputs kept for this very input message if the order took it before (maybe none:
        a step without outputs still wrote the order); None if not, or if it is settled."""
        if order is None or source is None or self.settled is None or self.settled(source):
            return None
        entries = [entry for entry in order.get(OUTBOX, ()) if entry["source"] == source]
        return [output for entry in entries for output in entry["outputs"]] if entries else None

    def _post(self, order: dict, source: list | None, outputs: list[dict]) -> None:
        """Keep the step's outputs (if any: the entry also says the input was taken) in the order's
        outbox until its input is settled."""
        kept = [entry for entry in order.get(OUTBOX, ()) if not self.settled(entry["source"])]
        if source is not None:
            kept.append({"source": source, "outputs": outputs})
        if kept:
            order[OUTBOX] = kept
        else:
            order.pop(OUTBOX, None)

    def rebuild_index(self) -> int:
        """Index the deadlines of every order in the store (after a restart or rebalance)."""
        self.index.clear()
        for order_id, order in self.orders.items():
            self.index.track(order_id, order["deadlines"])
        return len(self.index)
