"""Which offset Faust commits: a workaround of its consumer, in one place.

Faust finds the offset to commit from the acknowledged offsets of a partition
plus the ranges its fetcher saw skipped (`_gap`, added to the acknowledged
ones when the commit looks). After the order agent reads a gap again
(positions.py), the records it re-read and acknowledged lie inside such a
range too: Faust's list then holds each of them twice, its search for a run
of consecutive offsets stops at the first repeat, and each commit advances
by one or two offsets, so the group's committed offset stood still behind a
partition that was done (a scale-out run: 2,000 offsets behind, crawling at
one per commit). Here the two are merged as a set, and a skipped range counts
only up to the highest acknowledged offset: the records past it that the
agent dropped for the re-read are not processed yet, and Faust's whole-range
count (hidden so far by the crawl) would commit past them. The same head
rule, the same bookkeeping, under Faust's ack lock. (faust-streaming 0.15.3:
Consumer._new_offset, `_acked`, `_acked_index`, `_gap`, `_committed_offset`,
`ack_lock`; the same flaw is robinhood/faust#625 and #559.
tests/worker/test_commits.py fails when an upgrade changes what this relies on.)
"""
from __future__ import annotations

import faust
from faust.types import TP
from faust.types.tuples import ack_lock


def commit_acked_as_a_set(app: faust.App) -> None:
    consumer = app.consumer

    def new_offset(tp: TP) -> int | None:
        """The offset after the first run of consecutive acknowledged (or skipped) offsets."""
        with ack_lock:  # Faust's ack() appends under it
            acked = consumer._acked[tp]
            if not acked:
                return None
            done = set(acked)
            top = max(done)
            committed = consumer._committed_offset[tp]
            floor = committed or 0
            # A skipped range counts up to the highest acknowledged offset only: past it, the range holds
            # records dropped for a re-read that are not processed yet (Faust counts the whole range).
            gaps = consumer._gap[tp]
            for gap in gaps.overlap(floor, top + 1):
                done.update(range(max(gap.begin, floor), min(gap.end, top + 1)))
            gaps.chop(0, top + 1)
            ordered = sorted(done)
            # Faust's head rule: one offset missing right after the committed one does not hold the commit
            # back (a transaction marker); the order agent acknowledges nothing past a missing record.
            if committed and ordered[0] - committed > 1:
                acked[:] = ordered
                return None
            end = ordered[0]
            for offset in ordered:
                if offset != end:
                    break
                end += 1
            acked[:] = [offset for offset in ordered if offset >= end]
            consumer._acked_index[tp].difference_update(range(ordered[0], end))
            return end

    consumer._new_offset = new_offset
