"""RocksDB-backed Faust tables, their encodings, and the one reach into Faust's store (direct.py)."""
