"""Peer for the throughput benchmark: a naive Faust agent over the same backlog.

    python bench/peer_faust.py --broker HOST:PORT --source TOPIC --output TOPIC \
                               --group GROUP --datadir DIR [--transport kafka|confluent]

One agent reads the Avro order events one at a time, decodes each with
orderflow.streams.kafka.messages.EVENTS, keeps per-order state in a RocksDB-backed
Faust table (rocksdict driver, the options of tables/orders.py; the table's
changelog is Faust's own) and awaits one `topic.send` per event to the output
topic. No batching, no direct RocksDB writes, no lifecycle rules: what a first
Faust app looks like. The app id is the consumer group, so the benchmark
measures it by that group's committed offsets, like the worker.

Each run starts with an empty data dir and an empty changelog, so recovery
restores nothing and Tansu's short end offsets (see tansu.py) cannot cut a
restore short; a restarted peer would be exposed to them.

`--transport confluent` runs the same app on Faust's confluent-kafka
(librdkafka) driver; it needs the `confluent-kafka` package, which orderflow
does not depend on. With faust-streaming 0.15.3 it never gets past recovery:
librdkafka hands over the group assignment only inside poll()/consume(), and
the driver calls consume() only from the Fetcher, which Faust starts after an
assignment.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

PARTITIONS = 4
# tables/orders.py's RocksDB options, copied rather than imported: the peer stays
# independent of the worker's modules.
ROCKSDB_OPTIONS = {"driver": "rocksdict", "block_cache_size": 16 * 1024 * 1024,
                   "write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2}


def start(bootstrap: str, source: str, output: str, group: str, data_dir: Path,
          transport: str = "kafka", python: str = sys.executable) -> subprocess.Popen:
    """Start the peer in a subprocess; its log goes to DATA_DIR.log."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir.parent / f"{data_dir.name}.log").open("ab")
    return subprocess.Popen(
        [python, str(Path(__file__).resolve()), "--broker", bootstrap, "--transport", transport,
         "--source", source, "--output", output, "--group", group, "--datadir", str(data_dir)],
        stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_consumed(peer: subprocess.Popen, bootstrap: str, group: str, topic: str, total: int,
                  timeout: float) -> float:
    """common.wait_consumed, but failing as soon as the peer process exits."""
    import common

    async def wait() -> float:
        waiting = asyncio.ensure_future(common.wait_committed(bootstrap, group, topic, total, timeout))
        while not waiting.done():
            if peer.poll() is not None:
                waiting.cancel()
                raise RuntimeError(f"the peer exited with status {peer.returncode}; see its log")
            await asyncio.wait({waiting}, timeout=0.5)
        return waiting.result()
    return asyncio.run(wait())


async def create_topics(bootstrap: str, names: list[str]) -> None:
    """Create the output and changelog topics with the source's partition count: Faust's
    confluent driver does not create topics, and the broker would auto-create them with
    its own default."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, PARTITIONS, 1) for name in names if name not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


def build_app(args: argparse.Namespace):
    import faust

    from orderflow.streams.kafka import messages

    app = faust.App(
        args.group,
        broker=f"{args.transport}://{args.broker}",
        store="rocksdb://",
        datadir=args.datadir,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Short group timeouts for the embedded broker, as streams/app.py sets them.
        broker_session_timeout=4.0,
        broker_rebalance_timeout=4.0,
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(args.source, key_type=bytes, value_type=bytes, value_serializer="raw",
                       partitions=PARTITIONS)
    output = app.topic(args.output, key_type=bytes, value_type=bytes, value_serializer="raw",
                       partitions=PARTITIONS)
    orders = app.Table("peer-orders", partitions=PARTITIONS, key_type=bytes,
                       options=dict(ROCKSDB_OPTIONS))

    @app.agent(source)
    async def process(stream):
        async for event in stream.events():
            decoded = messages.EVENTS.decode(event.value)
            key = decoded["order_id"].encode()
            state = orders.get(key) or {"events": 0}
            orders[key] = {"status": decoded["event_type"], "events": state["events"] + 1,
                           "last_event_id": decoded["event_id"]}
            await output.send(key=event.key, value=event.value)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True, help="host:port of the broker")
    parser.add_argument("--transport", choices=["kafka", "confluent"], default="kafka")
    parser.add_argument("--source", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True, help="Faust app id, so also the consumer group")
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args()
    # One event loop for the setup and for Faust's worker, which takes the current one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(create_topics(args.broker, [args.output, f"{args.group}-peer-orders-changelog"]))
    app = build_app(args)
    import faust

    faust.Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
