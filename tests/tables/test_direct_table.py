"""tables/direct.py against the Faust RocksDB store it reaches into (faust-streaming 0.15.3, pinned).

These fail on an upgrade that changes how the store keeps a partition's
database or its persisted changelog offset, the two things the batch protocol
writes itself.
"""
from __future__ import annotations

import faust
from faust.types import TP

from orderflow.tables.direct import PartitionBatch, partition_db
from orderflow.tables.orders import define_orders_table


def _table(tmp_path):
    app = faust.App("direct-table-test", store="rocksdb://", datadir=str(tmp_path), broker="kafka://localhost:1")
    return define_orders_table(app, 4)


def test_a_stored_batch_is_what_the_faust_store_reads_with_the_offset_its_recovery_resumes_from(tmp_path):
    table = _table(tmp_path)
    batch = PartitionBatch(table, 2)
    batch.put(b"o-1", b"one")
    batch.put(b"o-2", b"two")
    batch.put(b"o-2", None)  # written then deleted in the same batch: one tombstone
    assert batch.get(b"o-1") == b"one" and batch.get(b"o-2") is None
    assert partition_db(table, 2).get(b"o-1") is None  # nothing on disk before store()
    records = batch.records()
    assert records == [(b"o-1", b"one"), (b"o-2", None)]
    batch.store(records, changelog_offset=41)
    changelog = TP(table.changelog_topic.get_topic_name(), 2)
    assert table.data.persisted_offset(changelog) == 41
    assert table.data._db_for_partition(2).get(b"o-1") == b"one"
    assert partition_db(table, 2) is table.data._db_for_partition(2)
    assert batch.changed == {}


def test_values_are_encoded_once_per_batch_and_reads_see_the_batch(tmp_path):
    table = _table(tmp_path)
    encoded = []
    batch = PartitionBatch(table, 0, encode=lambda v: encoded.append(v) or repr(v).encode(), decode=eval)
    batch.put(b"k", {"n": 1})
    batch.get(b"k")["n"] = 2  # the batch hands out its own value: the last one wins
    batch.put(b"k", batch.get(b"k"))
    batch.store(batch.records(), None)
    assert encoded == [{"n": 2}]
    assert PartitionBatch(table, 0, decode=eval).get(b"k") == {"n": 2}
