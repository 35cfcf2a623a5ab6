"""Finding due deadlines without scanning every order.

The deadlines themselves live on each order (so they are as durable as the
order table and its changelog); this index only says which orders to look at
next. It is a min-heap of (due, order_id): a tick pops what is due, so its
cost grows with the due deadlines, not with the pending ones. Entries that an
order no longer has are harmless: the core ignores a deadline the order moved
past. The live worker rebuilds the index from its tables after recovery.
"""
from __future__ import annotations

import heapq


class DeadlineIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._known: set[tuple[int, str]] = set()

    def __len__(self) -> int:
        return len(self._heap)

    def track(self, order_id: str, deadlines: dict[str, int]) -> None:
        for due in set(deadlines.values()):
            entry = (due, order_id)
            if entry not in self._known:
                self._known.add(entry)
                heapq.heappush(self._heap, entry)

    def next_due(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> list[tuple[int, str]]:
        """Every (due, order_id) due by `now`, earliest first, removed from the index."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            self._known.discard(entry)
            due.append(entry)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._known.clear()
