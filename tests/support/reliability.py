"""Support for the reliability tests (tests/*/test_reliability*.py).

Simulated traffic whose events all lie in the past, the replay it is compared
with, a reader that follows the output topics while workers run, and the order
state the workers leave in RocksDB and in the changelog.

Sizes: small by default (CI); ORDERFLOW_FULL=1 runs the issue's full sizes.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from support.live import OUTPUT_SPECS
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.cli.simulator import DAY, HOUR, Simulator
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.kafka.tansu import true_end_offsets
from orderflow.streams.lifecycle import Policy
from orderflow.streams.stock.room import StockRoom
from orderflow.tables.deadlines import parse_key
from orderflow.tables.json_table import decode, encode

FULL = os.environ.get("ORDERFLOW_FULL", "").strip().lower() not in ("", "0", "false", "no")
GROUP = "orderflow"  # the workers' consumer group (the Faust app id)
CHANGELOG = "orderflow-orders-changelog"
OFFSET_KEY = b"__faust\x00offset__"  # where Faust keeps a partition's changelog offset in its RocksDB
# Alerts that a deadline raises (the other alerts follow an event).
DEADLINE_ALERTS = {"SHIP_BY_OVERDUE", "SHIPMENT_STALLED", "REDELIVERY_WINDOW_EXPIRED", "REDELIVERY_DISPATCH_OVERDUE",
                   "AFTER_SALES_AUTO_APPROVED", "RETURN_NOT_SHIPPED"}


def sized(small, full):
    return full if FULL else small


def frozen_clock(origin: int) -> str:
    """The clock spec of a worker whose clock stands still at `origin`.

    Every event lies before `origin`, so the worker fires exactly the deadlines
    due by `origin`: the replay with until=origin is then the exact expectation,
    however long the test runs on a loaded machine.
    """
    return f"accelerated:0:{origin}"


# --- traffic and its replay ----------------------------------------------------------------------------------------

def simulated_traffic(orders: int, origin: int, seed: int = 7, orders_per_hour: float = 2000.0,
                      tail: int = 2 * DAY, settle: int = 6 * HOUR) -> list[dict]:
    """The events of `orders` simulated orders, in event-time order, all at least `settle` before `origin`.

    Orders are created over orders/orders_per_hour hours, the last one `tail`
    before the cut; events after the cut (origin - settle) have not happened
    yet, so the latest orders are mid-lifecycle with deadlines pending, and the
    deadlines between the cut and `origin` fall due on the (frozen) clock once
    a worker has caught up, not on an event.
    """
    cut = origin - settle
    start = cut - tail - int(orders / orders_per_hour * HOUR)
    return [e for e in Simulator(seed=seed, start=start, orders_per_hour=orders_per_hour).events(orders)
            if e["event_time"] <= cut]


def output_view(topic: str, record: dict) -> dict:
    """What a replay can know of a published output (dead letters carry transport details it cannot)."""
    if topic == topics.DEAD_LETTERS.name:
        return {k: record[k] for k in ("order_id", "at", "reason")}
    return record


def is_deadline_output(topic: str, record: dict) -> bool:
    """Did a deadline (a timer) cause this output, rather than an event?"""
    if topic in (topics.STATUS_CHANGES.name, topics.AFTER_SALES.name):
        return record["event_id"] is None
    if topic == topics.REMINDERS.name:
        return True
    return topic == topics.ALERTS.name and record["kind"] in DEADLINE_ALERTS


@dataclass
class Expected:
    """What a replay of the same input publishes and keeps."""
    outputs: dict[str, tuple[str, dict]]  # output_id -> (topic, output_view)
    orders: dict[str, dict]               # order_id -> order, as the orders table stores it
    tally: Counter
    until: int
    inventory: dict[str, dict]            # the inventory table's keys (SKUs and holds) and values

    def status_sequences(self) -> dict[str, list[str]]:
        return status_sequences((topic, {"output_id": oid, **view}) for oid, (topic, view) in self.outputs.items())


def expected_from_replay(events: Iterable[dict], until: int, policy: Policy | None = None) -> Expected:
    policy = policy or Policy.load(None)
    book, room = OrderBook({}, policy), StockRoom({})
    outputs = {}
    for output in replay((Line(n, e) for n, e in enumerate(events, 1)), until, policy, book, room):
        spec, record = messages.output_record(output)
        assert output["output_id"] not in outputs, f"the replay repeated output id {output['output_id']}"
        outputs[output["output_id"]] = (spec.name, output_view(spec.name, record))
    orders = {order_id: decode(encode(order)) for order_id, order in book.orders.items()}
    return Expected(outputs, orders, book.tally, until, decode(encode(room.store)))


def status_sequences(outputs: Iterable[tuple[str, dict]]) -> dict[str, list[str]]:
    """Per order, the ids of its status changes in the order they were published (first copy of each)."""
    sequences: dict[str, list[str]] = defaultdict(list)
    seen = set()
    for topic, record in outputs:
        if topic == topics.STATUS_CHANGES.name and record["output_id"] not in seen:
            seen.add(record["output_id"])
            sequences[record["order_id"]].append(record["output_id"])
    return dict(sequences)


# --- publishing --------------------------------------------------------------------------------------------------

@dataclass
class Published:
    ends: dict[int, int]           # partition of order-events -> end offset after publishing
    partition_of: dict[str, int]   # order_id -> its partition
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.ends.values())


async def publish_events(bootstrap: str, events: list[dict], **producer_options) -> Published:
    """Publish Avro-encoded events keyed by order, with a producer's normal batching (many records a batch)."""
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024,
                                **producer_options)
    await producer.start()
    try:
        futures = [await producer.send(topics.ORDER_EVENTS.name, messages.EVENTS.encode(e),
                                       key=e["order_id"].encode()) for e in events]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    ends: dict[int, int] = {}
    partition_of = {}
    for event, meta in zip(events, sent):
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        partition_of[event["order_id"]] = meta.partition
    return Published(ends, partition_of, time.monotonic() - started)


# --- following the outputs while workers run ---------------------------------------------------------------------

@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    timestamp: int  # when the worker produced it (wall ms)
    record: dict


class OutputLog:
    """Every message on the output topics from the beginning, read as it arrives (async context manager)."""

    def __init__(self, bootstrap: str, specs=OUTPUT_SPECS):
        self.bootstrap = bootstrap
        self.specs = specs
        self.codecs = {spec.name: codec_for_topic(spec) for spec in specs}
        self.messages: list[Message] = []
        self.ids: set[str] = set()
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> "OutputLog":
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
                                          fetch_max_bytes=64 * 1024 * 1024)
        await self._consumer.start()
        await self._consumer.topics()
        partitions = [TopicPartition(spec.name, p) for spec in self.specs
                      for p in self._consumer.partitions_for_topic(spec.name) or ()]
        assert partitions, "the output topics do not exist yet"
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 200) -> int:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        count = 0
        for records in batch.values():
            for m in records:
                record = self.codecs[m.topic].decode(m.value)
                self.messages.append(Message(m.topic, m.partition, m.offset, m.timestamp, record))
                self.ids.add(record["output_id"])
                count += 1
        return count

    async def wait(self, enough: Callable[["OutputLog"], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not enough(self):
            if time.monotonic() > deadline:
                return False
            await self.poll()
        return True

    async def quiet(self, seconds: float) -> None:
        """Read until nothing new arrived for `seconds`."""
        last = time.monotonic()
        while time.monotonic() - last < seconds:
            if await self.poll():
                last = time.monotonic()

    def pairs(self) -> list[tuple[str, dict]]:
        return [(m.topic, m.record) for m in self.messages]


async def committed_offsets(bootstrap: str, partitions: Iterable[int], topic: str = topics.ORDER_EVENTS.name,
                            ) -> dict[int, int]:
    """The workers' committed offsets on `topic`, by partition (missing: nothing committed yet).

    Asks with a consumer of the group that never joins it (OffsetFetch for named
    partitions: the embedded broker closes the connection on the all-partitions form).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        for partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            if offset is not None and offset >= 0:
                found[partition] = offset
        return found
    finally:
        await consumer.stop()


async def topic_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """End offsets as fetch responses report them (the embedded broker's listed ends are short after batches)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    finally:
        await consumer.stop()
    ends = await true_end_offsets({"bootstrap_servers": bootstrap}, partitions)
    return {tp.partition: end for tp, end in ends.items()}


async def drained(bootstrap: str, published: Published) -> tuple[bool, dict]:
    """Have the workers committed every input event published so far?"""
    events = await committed_offsets(bootstrap, published.ends)
    done = all(events.get(p, 0) >= end for p, end in published.ends.items())
    return done, {"events_committed": sum(events.values())}


class Stalled(Exception):
    """A worker stopped taking input while input was left."""


async def wait_caught_up(bootstrap: str, log: OutputLog, published: Published, timeout: float,
                         quiet: float = 2.0, stalled: Callable[[], str | None] = lambda: None) -> dict:
    """Wait until the workers have committed every input event, and no output
    came for `quiet` seconds: then whatever was due by the clock has fired and been applied.
    Returns figures about the wait; raises TimeoutError with them if that never happens, and
    Stalled as soon as `stalled()` names a reason."""
    started = time.monotonic()
    deadline = started + timeout
    last_new = time.monotonic()
    figures: dict = {}
    while time.monotonic() < deadline:
        why = stalled()
        if why:
            done, figures = await drained(bootstrap, published)
            if not done:
                raise Stalled(f"{why}; {figures}, {len(log.ids)} distinct outputs")
        if await log.poll():
            last_new = time.monotonic()
        elif time.monotonic() - last_new > quiet:
            done, figures = await drained(bootstrap, published)
            if done:
                await log.quiet(quiet)  # anything still on its way (deadlines fired once caught up)
                return {"caught_up_s": round(time.monotonic() - started, 1), **figures}
            last_new = time.monotonic() - quiet / 2  # look again a little later
    raise TimeoutError(f"workers did not catch up in {timeout} s: {figures}, {len(log.ids)} distinct outputs")


# --- comparing -----------------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    published: int                      # messages on the output topics
    distinct: int                       # distinct output ids among them
    copies: int                         # messages beyond the first of their output id
    conflicting: list[str]              # output ids whose copies differ
    missing: list[str]                  # expected, never published
    unexpected: list[str]               # published, not in the replay
    differing: list[str]                # published with other content than the replay's
    sequences_differ: list[str]         # orders whose status changes came in another order than the replay's
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.conflicting or self.missing or self.unexpected or self.differing or self.sequences_differ)

    def figures(self) -> dict:
        return {"published": self.published, "distinct": self.distinct, "duplicate_copies": self.copies,
                "conflicting_ids": len(self.conflicting), "missing": len(self.missing),
                "unexpected": len(self.unexpected), "differing": len(self.differing),
                "status_sequences_differ": len(self.sequences_differ)}

    def __str__(self) -> str:
        return f"{self.figures()}; examples: {self.examples[:6]}"


def compare_outputs(published: list[tuple[str, dict]], expected: Expected) -> Comparison:
    """Published outputs, grouped by output id, against the replay's."""
    copies: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for topic, record in published:
        copies[record["output_id"]].append((topic, record))
    conflicting = [oid for oid, group in copies.items() if any(g != group[0] for g in group[1:])]
    live = {oid: (group[0][0], output_view(*group[0])) for oid, group in copies.items()}
    missing = [oid for oid in expected.outputs if oid not in live]
    unexpected = [oid for oid in live if oid not in expected.outputs]
    differing = [oid for oid in live if oid in expected.outputs and live[oid] != expected.outputs[oid]]
    want = expected.status_sequences()
    got = status_sequences(published)
    sequences_differ = sorted(o for o in want.keys() | got.keys() if want.get(o, []) != got.get(o, []))
    examples = ([f"missing {expected.outputs[o]}" for o in missing[:3]]
                + [f"unexpected {live[o]}" for o in unexpected[:3]]
                + [f"differing live {live[o]} replay {expected.outputs[o]}" for o in differing[:2]]
                + [f"conflicting copies {copies[o]}" for o in conflicting[:2]])
    return Comparison(len(published), len(copies), len(published) - len(copies), conflicting, missing, unexpected,
                      differing, sequences_differ, examples)


def compare_orders(stored: dict[str, dict], expected: Expected) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, differing) order ids between the stored state and the replay's."""
    missing = sorted(expected.orders.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.orders.keys())
    differing = sorted(o for o in stored.keys() & expected.orders.keys() if stored[o] != expected.orders[o])
    return missing, unexpected, differing


def describe_order_difference(stored: dict, expected: dict) -> str:
    keys = sorted(k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k))
    return "; ".join(f"{k}: stored {str(stored.get(k))[:160]} replay {str(expected.get(k))[:160]}" for k in keys)


def assert_orders_match(stored: dict[str, dict], expected: Expected, line: str) -> None:
    """The stored orders are exactly the replay's; the message shows the first differences."""
    missing, unexpected, differing = compare_orders(stored, expected)
    assert not (missing or unexpected or differing), (
        f"{line}\nfirst differing: "
        + "; ".join(f"{o}: {describe_order_difference(stored[o], expected.orders[o])}" for o in differing[:2])
        + f" missing {missing[:3]} unexpected {unexpected[:3]}")


# --- the state the workers leave -----------------------------------------------------------------------------------

@dataclass
class PartitionCopy:
    data_dir: Path
    partition: int
    persisted_offset: int | None
    orders: dict[str, dict]


def rocksdb_copies(data_dirs: Iterable[Path], table: str = "orders") -> list[PartitionCopy]:
    """Every partition database of a table (orders by default) in the workers' data dirs (read after they
    stopped)."""
    found = []
    for data_dir in data_dirs:
        for path in sorted(Path(data_dir).rglob(f"{table}-*.db")):
            partition = int(re.fullmatch(rf"{table}-(\d+)\.db", path.name)[1])
            db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
            try:
                orders, offset = {}, None
                for key, value in db.items():
                    if key == OFFSET_KEY:
                        offset = int(value)
                    else:
                        orders[key.decode()] = decode(value)
            finally:
                db.close()
            found.append(PartitionCopy(Path(data_dir), partition, offset, orders))
    return found


def inconsistent_copies(copies: list[PartitionCopy], snapshots: dict) -> list[str]:
    """Copies whose orders are not the changelog's as of the offset they say they hold: a worker taking
    the partition over from such a copy would read on from there and never get what it lacks."""
    wrong = []
    for copy in copies:
        expected = {} if copy.persisted_offset is None else snapshots.get((copy.partition, copy.persisted_offset))
        if expected is None or copy.orders != expected:
            lacking = len(set(expected or ()) - set(copy.orders))
            wrong.append(f"{copy.data_dir.name}/orders-{copy.partition} at offset {copy.persisted_offset}: "
                         f"{len(copy.orders)} orders, the changelog's {len(expected or ())} ({lacking} lacking)")
    return wrong


def latest_state(copies: list[PartitionCopy]) -> tuple[dict[str, dict], dict[int, PartitionCopy]]:
    """Per partition, the copy with the highest persisted changelog offset (the last owner's); their orders."""
    latest: dict[int, PartitionCopy] = {}
    for copy in copies:
        current = latest.get(copy.partition)
        if current is None or (copy.persisted_offset or -1) > (current.persisted_offset or -1):
            latest[copy.partition] = copy
    orders = {}
    for copy in latest.values():
        orders.update(copy.orders)
    return orders, latest


async def changelog_state(bootstrap: str, topic: str = CHANGELOG,
                          snapshots: dict | None = None) -> tuple[dict[str, dict], dict]:
    """The orders as the changelog holds them (the last value of each key; a null value deletes),
    and figures on the topic: records fetched, and the end offsets the broker lists vs the fetched highwaters.
    `snapshots`, keyed by (partition, offset), is filled with the partition's orders as of that offset."""
    wanted = set(snapshots or ())
    by_partition: dict[int, dict[str, dict]] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"no changelog topic {topic}"
        listed = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        orders: dict[str, dict] = {}
        fetched = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for records in batch.values():
                for m in records:
                    fetched += 1
                    mine = by_partition.setdefault(m.partition, {})
                    if m.value is None:
                        orders.pop(m.key.decode(), None)
                        mine.pop(m.key.decode(), None)
                    else:
                        orders[m.key.decode()] = mine[m.key.decode()] = decode(m.value)
                    if (m.partition, m.offset) in wanted:
                        snapshots[(m.partition, m.offset)] = dict(mine)
            highwaters = {tp: consumer.highwater(tp) for tp in partitions}
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(h is not None and positions[tp] >= h for tp, h in highwaters.items()):
                break
        figures = {"changelog_records": fetched, "changelog_listed_end": sum(listed.values()),
                   "changelog_fetched_end": sum(h or 0 for h in highwaters.values())}
        return orders, figures
    finally:
        await consumer.stop()


# --- worker logs ---------------------------------------------------------------------------------------------------

def final_tally(log: str) -> dict[str, int]:
    """The worker's last "events in=... applied=..." line as numbers."""
    lines = [line for line in log.splitlines() if "events in=" in line]
    assert lines, f"no tally line in the worker log:\n{log[-2000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(-?\d+)", lines[-1].split("events ", 1)[1])}


def no_events_since_start(log: str, tallies: int = 3) -> str | None:
    """A reason if the worker's last start logged `tallies` tally lines (10 s apart) and took no event."""
    start = log.rfind("[^Worker]: Starting...")
    counts = re.findall(r"events in=(\d+)", log[max(start, 0):])
    if len(counts) >= tallies and all(c == "0" for c in counts):
        return f"the worker took no input event in the {len(counts)} tally periods since it started"
    return None


def reconciles(tally: dict[str, int]) -> bool:
    return tally["in"] == tally["applied"] + tally["dead_lettered"] + tally["duplicates"] + tally["buffered"]


def report(record_property, test: str, figures: dict) -> str:
    """Print the figures (shown with -s and in the captured output of a failure) and attach them to the
    test's junit properties; returns the line, to put into assertion messages."""
    line = f"[{test}{' FULL' if FULL else ''}] " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(line, flush=True)
    for key, value in figures.items():
        record_property(key, value)
    return line



_ASSIGNED = re.compile(r"^\[(?P<when>[\d-]+ [\d:]+,\d+)\] \[\d+\] \[INFO\] Setting newly assigned partitions\s*\n"
                       r"(?P<table>(?:[+|].*\n)+)", re.M)


def _partition_set(text: str) -> set[int]:
    found: set[int] = set()
    for part in text.strip("{} ").split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-")
            found.update(range(int(low), int(high) + 1))
        elif part:
            found.add(int(part))
    return found


def assignments(log: str, topic: str = topics.ORDER_EVENTS.name) -> list[tuple[int, set[int]]]:
    """(wall ms, partitions of `topic`) each time Faust logged a new assignment of this worker."""
    found = []
    for match in _ASSIGNED.finditer(log):
        when = datetime.strptime(match["when"], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # logged in local time
        partitions: set[int] = set()
        for row in match["table"].splitlines():
            cells = [c.strip() for c in row.strip("|").split("|")]
            if len(cells) == 2 and cells[0] == topic:
                partitions = _partition_set(cells[1])
        found.append((int(when * 1000), partitions))
    return found


def ownership(logs: dict[str, str], until: int | None = None) -> dict[int, list[tuple[int, str]]]:
    """Per partition, (wall ms, worker) each time it went to a worker other than its previous owner,
    from the workers' logs (each assignment lists all the partitions a worker then owns); only
    assignments up to `until` (wall ms) count."""
    events = []
    for name, log in logs.items():
        for when, partitions in assignments(log):
            if until is None or when <= until:
                events.append((when, name, partitions))
    events.sort()
    owners: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for when, name, partitions in events:
        for partition in partitions:
            if not owners[partition] or owners[partition][-1][1] != name:
                owners[partition].append((when, name))
    return dict(owners)


_HIGHWATERS = re.compile(r"Highwater for active changelog partitions:\s*\n(?P<table>(?:[+|].*\n)+)")


def restore_highwaters(log: str, topic: str = CHANGELOG) -> list[dict[int, int]]:
    """The highwaters (last offsets) Faust used for each restore of `topic`'s active partitions, per recovery."""
    found = []
    for match in _HIGHWATERS.finditer(log):
        current, highwaters = None, {}
        for row in match["table"].splitlines():
            cells = [c.strip() for c in row.strip("|").split("|")]
            if len(cells) != 3 or not cells[1].lstrip("-").isdigit():
                continue
            if cells[0] != "〃":
                current = cells[0]
            if current == topic:
                highwaters[int(cells[1])] = int(cells[2])
        found.append(highwaters)
    return found


async def listed_and_fetched_ends(bootstrap: str, topic: str = CHANGELOG) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition: the end offset the broker lists (ListOffsets) and the one fetch responses report."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        listed = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    fetched = await true_end_offsets({"bootstrap_servers": bootstrap}, partitions)
    return ({tp.partition: end for tp, end in listed.items()}, {tp.partition: end for tp, end in fetched.items()})


def index_entries(orders: dict[str, dict]) -> set[tuple[int, str]]:
    """What a deadline index of these orders holds: (due, order_id), one per due time of an order."""
    return {(due, order_id) for order_id, order in orders.items() for due in set(order["deadlines"].values())}


def stored_index(data_dir: Path) -> set[tuple[int, str]]:
    """The deadline index in a stopped worker's RocksDB (tables/deadlines.py), every partition."""
    entries = set()
    for path in sorted(Path(data_dir).rglob("deadlines-*.db")):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            entries |= {parse_key(key) for key in db.keys() if key < b"\x01"}
        finally:
            db.close()
    return entries
