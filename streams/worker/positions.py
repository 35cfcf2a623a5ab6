"""Where the order agent stands in each input partition, and what to do about gaps.

Faust drops records fetched for a partition that is not active yet (during a
changelog restore), and the seek before may already have happened: a record
then arrives past offsets never delivered, which nothing would process or
commit. The agent reads the partition again from the first missing offset,
once per gap. Until the re-read arrives, records fetched before it (past the
one that showed the gap) are dropped, unacknowledged: they come again, in
order. A gap the re-read confirms (e.g. a transaction marker) is accepted.

Faust records such a gap too and, at its next commit, counts the whole gap
as done as soon as any offset past its start is acknowledged: a crash during
the re-read would then lose what it had not reached. So while a partition is
`rereading`, the agent holds back its acknowledgements until the re-read has
passed the record that showed the gap.

A partition is judged from its committed offset, asked of the broker
(`Committed`) once each time it is assigned: Faust reads from there. (The
order agent then acknowledges without applying the records below the read
position stored with the partition's state: tables/deadlines.py.)
(faust-streaming 0.15.3, aiokafka 0.14.0.)
"""
from __future__ import annotations

import asyncio
import time
from enum import Enum
from typing import Callable, Hashable

from aiokafka import AIOKafkaConsumer, TopicPartition


class Verdict(Enum):
    PROCESS = "process"
    DONE = "done"        # processed already (a seek back delivers it again): acknowledged again, not applied
    DROP = "drop"        # fetched before a re-read: it comes again in order
    REWIND = "rewind"    # read again from `rewind_to(tp)`; this record comes again too


class ReadPositions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[Hashable, int] = {}  # per partition, the next offset to process
        self._gaps: dict[Hashable, tuple[int, int]] = {}  # per partition, (first missing offset, offset that showed it)
        self._moved: dict[Hashable, float] = {}  # per partition being read again, when it last moved

    def next_offset(self, tp: Hashable, committed: int) -> int:
        """The next offset to process; before any record of the partition, the committed offset."""
        return max(self._next.get(tp, committed), committed)

    def rereading(self, tp: Hashable) -> bool:
        """True while a gap's re-read has not passed the record that showed it."""
        gap = self._gaps.get(tp)
        return gap is not None and self._next.get(tp, 0) <= gap[1]

    def judge(self, tp: Hashable, offset: int, committed: int) -> Verdict:
        expected = self.next_offset(tp, committed)
        if tp in self._moved and offset == expected:
            self._moved[tp] = self._clock()
        if offset < expected:  # processed before (a seek back delivers it again): its step is done
            return Verdict.DONE
        if offset == expected:
            self._next[tp] = offset + 1
            return Verdict.PROCESS
        gap = self._gaps.get(tp)
        if gap is not None and gap[0] == expected:
            if offset > gap[1]:
                return Verdict.DROP
            self._next[tp] = offset + 1
            return Verdict.PROCESS
        self._gaps[tp] = (expected, offset)
        self._moved[tp] = self._clock()
        return Verdict.REWIND

    def stalled_rereads(self, after: float) -> list[tuple[Hashable, int]]:
        """(partition, offset to read from) of every re-read that has not moved for `after` seconds.
        Faust drops the records of a seek that raced the fetch it replaced: such a re-read never comes."""
        now = self._clock()
        stalled = [tp for tp, moved in self._moved.items() if now - moved > after]
        for tp in stalled:
            if self.rereading(tp):
                self._moved[tp] = now
            else:
                del self._moved[tp]
        return [(tp, self._next.get(tp, self._gaps[tp][0])) for tp in stalled if tp in self._moved]

    def rewind_to(self, tp: Hashable) -> int:
        return self._gaps[tp][0]


class Committed:
    """Committed offsets of the worker's group, asked of the broker by a client of its own
    (the consumer Faust runs keeps them in private state only)."""

    def __init__(self, settings: dict, group: str):
        self._settings = dict(settings, group_id=group, enable_auto_commit=False)
        self._started: asyncio.Task | None = None

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(**self._settings)
        await consumer.start()
        return consumer

    async def offset(self, topic: str, partition: int) -> int:
        """The partition's committed offset: the next to read (0 when none)."""
        if self._started is None:  # on the worker's event loop, once, whoever asks first
            self._started = asyncio.ensure_future(self._start())
        consumer = await asyncio.shield(self._started)
        return await consumer.committed(TopicPartition(topic, partition)) or 0

    async def close(self) -> None:
        if self._started is not None:
            await (await self._started).stop()
