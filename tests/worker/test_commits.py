"""Which offset the worker's Faust consumer commits (streams/worker/commits.py), on a real
Faust consumer's bookkeeping: no broker is needed to decide an offset."""
from __future__ import annotations

import inspect

import faust
from faust.transport.consumer import Consumer
from faust.types import TP

from orderflow.streams.worker.commits import commit_acked_as_a_set

PART = TP("order-events", 4)


def consumer_of(patched: bool):
    app = faust.App("commits-test", broker="kafka://127.0.0.1:1")
    if patched:
        commit_acked_as_a_set(app)
    return app.consumer


def after_a_re_read(consumer, committed=823, end=2920):
    """The order agent read the gap at 823 again: Faust's fetcher had seen 824..899 skipped (records
    in flight from before the seek, dropped), then 823..2919 were all acknowledged."""
    consumer._committed_offset[PART] = committed
    consumer._gap[PART].addi(committed + 1, 900)
    for offset in range(committed, end):
        consumer._acked[PART].append(offset)
        consumer._acked_index[PART].add(offset)


def test_a_re_read_inside_a_skipped_range_is_committed_whole():
    """Fails with Faust's own _new_offset: it commits 825, then one more offset per commit."""
    consumer = consumer_of(patched=True)
    after_a_re_read(consumer)
    assert consumer._new_offset(PART) == 2920
    assert list(consumer._acked[PART]) == [] and not consumer._acked_index[PART] and not consumer._gap[PART]


def test_records_dropped_for_the_re_read_are_not_committed_before_they_are_processed():
    """The skipped range runs to 899; the agent has acknowledged 823..850 only: 851..899 are records it
    dropped and reads again. Counting the whole range (Faust's rule) would commit 900 and lose them."""
    consumer = consumer_of(patched=True)
    after_a_re_read(consumer, end=851)
    assert consumer._new_offset(PART) == 851
    assert sorted((g.begin, g.end) for g in consumer._gap[PART]) == [(851, 900)]
    consumer._committed_offset[PART] = 851
    consumer._acked[PART].extend(range(851, 870))
    assert consumer._new_offset(PART) == 870


def test_a_skipped_range_below_the_committed_offset_does_not_open_the_head():
    """A range recorded before the first commit (Faust clamps only once there is one) lies below the
    committed offset: it must not stand in for the offsets missing right after it."""
    consumer = consumer_of(patched=True)
    consumer._gap[PART].addi(95, 100)
    consumer._committed_offset[PART] = 100
    consumer._acked[PART].extend([102, 103])  # 100 and 101 never acknowledged
    assert consumer._new_offset(PART) is None
    assert list(consumer._acked[PART]) == [102, 103]


def test_faust_still_needs_the_workaround():
    """When an upgrade fixes the crawl (or renames what commits.py replaces), this fails: drop the workaround."""
    assert "_new_offset" in inspect.getsource(Consumer._filter_committable_offsets)
    consumer = consumer_of(patched=False)
    after_a_re_read(consumer)
    assert consumer._new_offset(PART) == 825


def test_missing_offsets_hold_back_what_follows():
    consumer = consumer_of(patched=True)
    consumer._committed_offset[PART] = 100
    consumer._acked[PART].extend([100, 101, 104, 105])
    assert consumer._new_offset(PART) == 102
    consumer._committed_offset[PART] = 102  # what Faust does once the commit succeeds
    assert consumer._new_offset(PART) is None  # 102 and 103 never acknowledged: 104 and 105 wait
    consumer._acked[PART].extend([102, 103])
    assert consumer._new_offset(PART) == 106


def test_the_head_rule_is_faust_s():
    """One offset missing right after the committed one (a transaction marker) does not hold the commit;
    two do. The same answers as Faust's own method."""
    for patched in (False, True):
        consumer = consumer_of(patched)
        consumer._committed_offset[PART] = 100
        consumer._acked[PART].extend([101, 102])
        assert consumer._new_offset(PART) == 103
        consumer._committed_offset[PART] = 103
        consumer._acked[PART].extend([105, 106])
        assert consumer._new_offset(PART) is None


def test_skipped_ranges_below_the_acknowledged_count_as_done():
    consumer = consumer_of(patched=True)
    consumer._committed_offset[PART] = 10
    consumer._gap[PART].addi(11, 15)   # 11..14 skipped (compaction, markers)
    consumer._gap[PART].addi(40, 50)   # beyond anything acknowledged: kept for later
    consumer._acked[PART].extend([10, 15, 16])
    assert consumer._new_offset(PART) == 17
    assert sorted((g.begin, g.end) for g in consumer._gap[PART]) == [(40, 50)]
