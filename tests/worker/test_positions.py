"""The order agent's judgement of each input record's offset (streams/worker/positions.py)."""
from __future__ import annotations

from orderflow.streams.worker.positions import ReadPositions, Verdict

TP = ("order-events", 7)


def judge_all(positions, offsets, committed=0):
    return [positions.judge(TP, offset, committed).name for offset in offsets]


def test_records_in_order_are_processed_from_the_committed_offset():
    positions = ReadPositions()
    assert judge_all(positions, [5, 6, 7], committed=5) == ["PROCESS"] * 3
    assert positions.next_offset(TP, committed=5) == 8


def test_a_gap_is_read_again_and_records_fetched_before_the_re_read_are_dropped():
    """The records past the one that showed the gap were fetched before the seek: processing them
    would apply a partition's events out of order (a SHIPPED after its COLLECTED)."""
    positions = ReadPositions()
    assert judge_all(positions, [0, 1]) == ["PROCESS", "PROCESS"]
    assert positions.judge(TP, 10, 0) is Verdict.REWIND and positions.rewind_to(TP) == 2
    assert judge_all(positions, [11, 12]) == ["DROP", "DROP"]          # in flight from before the seek
    assert judge_all(positions, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) == ["PROCESS"] * 11  # the re-read
    assert positions.next_offset(TP, 0) == 13


def test_a_gap_the_re_read_confirms_is_accepted_once():
    positions = ReadPositions()
    judge_all(positions, [0, 1])
    assert positions.judge(TP, 5, 0) is Verdict.REWIND
    assert judge_all(positions, [4, 5, 6]) == ["PROCESS"] * 3  # offsets 2..3 are not there (a marker)
    assert positions.judge(TP, 9, 0) is Verdict.REWIND          # a new gap is read again, once


def test_a_record_delivered_again_after_a_seek_back_is_not_applied_again_and_moves_nothing_back():
    """Processing it again is not harmless: an order given up on (dead-lettered and deleted) would
    take its event as new and be dead-lettered a second time, with other ids. It is acknowledged again
    (DONE): after a rebalance its first acknowledgement may never have been committed."""
    positions = ReadPositions()
    judge_all(positions, [3, 4], committed=3)
    assert judge_all(positions, [2, 3, 4], committed=3) == ["DONE"] * 3 and positions.next_offset(TP, 3) == 5
    assert positions.judge(TP, 5, 3) is Verdict.PROCESS


def test_acknowledgements_wait_until_the_re_read_passes_the_record_that_showed_the_gap():
    """Faust counts a whole gap as done once an offset past its start is acked: acking the re-read's
    first records would commit offsets the re-read has not reached (lost after a crash)."""
    positions = ReadPositions()
    judge_all(positions, [0, 1])
    assert not positions.rereading(TP)
    assert positions.judge(TP, 10, 0) is Verdict.REWIND and positions.rereading(TP)
    judge_all(positions, [2, 3, 4, 5, 6, 7, 8, 9])
    assert positions.rereading(TP)
    judge_all(positions, [10])
    assert not positions.rereading(TP)


def test_a_re_read_that_does_not_come_is_asked_for_again_from_where_it_stands():
    """Faust drops the records of a seek that raced the fetch it replaced: nothing would ever move."""
    now = [0.0]
    positions = ReadPositions(clock=lambda: now[0])
    judge_all(positions, [0, 1])
    assert positions.judge(TP, 10, 0) is Verdict.REWIND
    now[0] = 1.0
    assert positions.stalled_rereads(after=2.0) == []
    now[0] = 3.0
    assert positions.stalled_rereads(after=2.0) == [(TP, 2)]
    assert positions.stalled_rereads(after=2.0) == []  # asked again: the clock starts over
    judge_all(positions, [2, 3])
    now[0] = 6.0
    assert positions.stalled_rereads(after=2.0) == [(TP, 4)]
    judge_all(positions, range(4, 11))
    now[0] = 9.0
    assert positions.stalled_rereads(after=2.0) == [] and not positions.rereading(TP)
