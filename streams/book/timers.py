"""Finding due deadlines without scanning every order.

The deadlines themselves live on each order (so they are as durable as the
order table and its changelog); an index only says which orders to look at
next. The order book drives it with an order's deadlines before and after
each step (`track`) and takes what is due (`pop_due`), so a look costs the
due deadlines, not the pending ones. Two implementations: this in-memory
min-heap of (due, order_id) for the replay and tests, and the live worker's
in RocksDB beside the orders (tables/deadlines.py), which nothing has to
rebuild and which does not grow in memory.
"""
from __future__ import annotations

import heapq


def changed_dues(before: dict[str, int], after: dict[str, int]) -> tuple[set[int], set[int]]:
    """The due times an order dropped and gained in a step (deadlines with the same due share an entry)."""
    was, now = set(before.values()), set(after.values())
    return was - now, now - was


class DeadlineIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._live: set[tuple[int, str]] = set()  # entries of the heap the orders still have

    def __len__(self) -> int:
        """Deadlines pending (one per due time of an order)."""
        return len(self._live)

    def track(self, order_id: str, before: dict[str, int], after: dict[str, int]) -> None:
        """A step took the order's deadlines from `before` to `after`."""
        gone, new = changed_dues(before, after)
        for due in gone:
            self._live.discard((due, order_id))
        for due in new:
            if (due, order_id) not in self._live:
                self._live.add((due, order_id))
                heapq.heappush(self._heap, (due, order_id))

    def due_by(self, now: int) -> bool:
        """Whether any deadline is due by `now`."""
        while self._heap and self._heap[0] not in self._live:
            heapq.heappop(self._heap)
        return bool(self._heap) and self._heap[0][0] <= now

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """Every (due, order_id) due by `now`, earliest first (ties by order id), removed from the index."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if entry in self._live:
                self._live.remove(entry)
                due.append(entry)
        return due
