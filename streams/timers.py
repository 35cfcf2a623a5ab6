"""Finding due deadlines without scanning every order.

The deadlines themselves live on each order (so they are as durable as the
order table and its changelog); this index only says which orders to look at
next. It is a min-heap of (due, order_id): a tick pops what is due, so its
cost grows with the due deadlines, not with the pending ones. The index also
keeps each order's current deadlines: an entry the order no longer has (it
was paid before its reminder, say) is dropped when it comes up instead of
costing a tick. The live worker rebuilds the index from its tables after recovery.
"""
from __future__ import annotations

import heapq


class DeadlineIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        # Per order, the dues it has and that were not popped yet (a tuple: an order has a few,
        # and a million orders must fit in memory).
        self._current: dict[str, tuple[int, ...]] = {}
        self._pending = 0

    def __len__(self) -> int:
        """Deadlines pending (not counting entries the orders no longer have)."""
        return self._pending

    def track(self, order_id: str, deadlines: dict[str, int]) -> None:
        """The order's deadlines now (all of them: dues it no longer lists are forgotten)."""
        now = tuple(set(deadlines.values()))
        before = self._current.pop(order_id, ())
        for due in now:
            if due not in before:
                heapq.heappush(self._heap, (due, order_id))
        if now:
            self._current[order_id] = now
        self._pending += len(now) - len(before)

    def _live(self, entry: tuple[int, str]) -> bool:
        return entry[0] in self._current.get(entry[1], ())

    def next_due(self) -> int | None:
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """Every (due, order_id) due by `now`, earliest first, removed from the index."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._live(entry):
                left = tuple(other for other in self._current.pop(entry[1]) if other != entry[0])
                if left:
                    self._current[entry[1]] = left
                self._pending -= 1
                due.append(entry)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._current.clear()
        self._pending = 0
