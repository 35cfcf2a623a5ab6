"""Where the order agent stands in each input partition, and what to do about gaps.

Faust drops records fetched for a partition that is not active yet (during a
changelog restore), and the seek before may already have happened: a record
then arrives past offsets never delivered, which nothing would process or
commit. The agent reads the partition again from the first missing offset,
once per gap. Until the re-read arrives, records fetched before it (past the
one that showed the gap) are dropped: they come again, in order. A gap the
re-read confirms (e.g. a transaction marker) is accepted, and so is a
committed offset past the gap (Faust seeks there too). A partition whose
committed offset Faust has not learnt yet would look like one gap from
offset 0: the agent asks the broker first (`unsure`).
(faust-streaming 0.15.3, aiokafka 0.14.0.)
"""
from __future__ import annotations

from enum import Enum
from typing import Hashable


class Verdict(Enum):
    PROCESS = "process"
    DROP = "drop"        # fetched before the re-read: it comes again in order
    REWIND = "rewind"    # read again from `rewind_to(tp)`; this record comes again too


class ReadPositions:
    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}  # per partition, the next offset to process
        self._gaps: dict[Hashable, tuple[int, int]] = {}  # per partition, (first missing offset, offset that showed it)

    def next_offset(self, tp: Hashable, committed: int) -> int:
        """The next offset to process; before any record of the partition, the committed offset.
        What is committed is done, also when Faust committed past a gap being read again."""
        return max(self._next.get(tp, committed), committed)

    def unsure(self, tp: Hashable, offset: int, committed: int) -> bool:
        """True when this record would be judged against a committed offset of 0 that may just not
        be known yet (the caller should ask the broker for it before judging)."""
        return tp not in self._next and not committed and offset > 0

    def judge(self, tp: Hashable, offset: int, committed: int) -> Verdict:
        expected = self.next_offset(tp, committed)
        if offset <= expected:  # in order, or a record processed before (handled as a duplicate)
            self._next[tp] = max(expected, offset + 1)
            return Verdict.PROCESS
        gap = self._gaps.get(tp)
        if gap is not None and gap[0] == expected:
            if offset > gap[1]:
                return Verdict.DROP
            self._next[tp] = offset + 1
            return Verdict.PROCESS
        self._gaps[tp] = (expected, offset)
        return Verdict.REWIND

    def rewind_to(self, tp: Hashable) -> int:
        return self._gaps[tp][0]

    def forget(self, tp: Hashable) -> None:
        """A partition that comes back is judged afresh by its committed offset."""
        self._next.pop(tp, None)
        self._gaps.pop(tp, None)
