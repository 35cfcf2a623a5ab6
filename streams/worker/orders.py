"""The order agent: order events and stock replies in, the order book over them, outputs out;
and the timers of its partitions, fired in-process through the same per-partition path.

The worker that owns a partition of order-events owns its orders (the tables
are co-partitioned) and their deadlines: each partition's deadline index is a
table in RocksDB beside its orders (tables/deadlines.py), written in the same
batch, so it is there as soon as the partition is restored; this worker stops
looking at it the moment the partition is revoked, so no deadline of a
partition that moved is fired here. A timer wakes partitions that have no
input: it takes the partition's lock and runs a batch with no events, which
fires what is due. Nothing writes the tables outside a batch
(streams/worker/protocol.py).

Time: each event is applied at its partition's stream time (the latest event
time processed there, never ahead of the clock), as a replay does. Deadlines
fire by the clock only for a partition this worker has caught up on (its next
offset has reached the fetched highwater); while a backlog remains, only up
to the partition's stream time. So a payment in time that is still in the
backlog is never overtaken by its auto-cancel.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from orderflow.tables.deadlines import PartitionIndex, define_deadlines_table
from orderflow.tables.direct import PartitionBatch, partition_db
from orderflow.tables.json_table import decode

from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import SchemaError, codec_for_topic
from .positions import Committed, ReadPositions, Verdict
from .protocol import BatchProtocol, Record
from .shell import Worker, by_partition, describe

log = logging.getLogger("orderflow")

# A batch is what arrived within BATCH_WAIT seconds, at most BATCH_SIZE messages (all partitions):
# the per-record costs of Faust, the changelog (one record per order per batch) and the
# deliveries awaited together shrink with it; BATCH_WAIT is what it adds to latency.
BATCH_SIZE = 2000
BATCH_WAIT = 0.05
# A gap's re-read that shows no progress for this long is asked for again (Faust can drop the
# records of a seek that raced the fetch it replaced).
STALLED_REREAD_S = 2.0
# Orders of a partition indexed per batch when a partition has orders stored before its index.
INDEX_BATCH = 10_000


@dataclass(eq=False)
class Partition:
    """What this worker keeps for one partition of order-events while it owns it."""
    number: int
    index: PartitionIndex
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stream_time: int | None = None
    # Deadlines pending after its last batch (RocksDB's estimate), for the logs: read while the
    # partition's database is surely open, not when Faust may have closed it (a stopping worker).
    pending: int = 0
    # Per input topic partition (order-events and stock-replies of this number): its committed
    # offset, where Faust reads from, found once; the read position stored with the partition's
    # state, below which records are applied already; where reading stands; acknowledgements held
    # back while a gap is read again. They live and die with this object, so a batch that outlives
    # its partition's revocation cannot leave positions behind for the next assignment.
    starts: dict[TP, int] = field(default_factory=dict)
    applied: dict[TP, int] = field(default_factory=dict)
    positions: ReadPositions = field(default_factory=ReadPositions)
    held: dict[TP, list] = field(default_factory=dict)


def register_orders(worker: Worker, protocol: BatchProtocol, committed: Committed) -> None:
    app, book, clock, orders = worker.app, worker.book, worker.clock, worker.orders
    deadlines = define_deadlines_table(app, worker.config.partitions)
    inputs = (topics.ORDER_EVENTS.name, topics.STOCK_REPLIES.name)
    source = app.topic(*inputs, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    codecs = {spec.name: codec_for_topic(spec) for spec in (*topics.OUTPUT_TOPICS.values(), topics.STOCK_REQUESTS)}
    owned: dict[int, Partition] = {}
    orders_changelog = worker.orders_table.changelog_topic.get_topic_name()
    recovered_once = asyncio.Event()  # not ready before the first recovery, whatever is assigned

    async def start_offset(tp: TP, part: Partition) -> int:
        """The committed offset, where Faust reads the partition from: gaps in what it delivers are
        found from there. Also reads the partition's stored read position into `part.applied`."""
        if tp not in part.starts:
            start = await committed.offset(tp.topic, tp.partition)
            part.applied.setdefault(tp, part.index.read_position(tp.topic))
            part.starts.setdefault(tp, start)
        return part.starts[tp]

    def handle(message, part: Partition) -> list[dict]:
        if message.topic == topics.STOCK_REPLIES.name:
            return book.answer(messages.REPLIES.decode(message.value))
        try:
            record = messages.EVENTS.decode(message.value)
        except SchemaError as why:
            book.count_failed()
            return [messages.rejected(message.topic, message.partition, message.offset, f"undecodable message: {why}",
                                      part.stream_time or clock.now())]
        event_time = record["event_time"]
        part.stream_time = now = max(part.stream_time or event_time, min(event_time, clock.now()))
        return book.apply(messages.event_from_record(record), now)

    async def safe_time(part: Partition) -> int | None:
        """Deadlines up to this time may fire: the clock once caught up, else the stream time."""
        tp = TP(topics.ORDER_EVENTS.name, part.number)
        highwater = app.consumer.highwater(tp)
        done = part.positions.next_offset(tp, await start_offset(tp, part))
        if highwater is not None and done >= highwater and not part.positions.rereading(tp):
            return clock.now()
        return part.stream_time

    def apply(part: Partition, events: list, now: int | None) -> tuple[list[PartitionBatch], list, list, list]:
        """Step 1, in memory and without awaiting: the core over the events, then the due deadlines;
        returns the table batches (orders, deadline index), the records to publish, the events
        applied and the gaps seen."""
        # The orders are stored first: a kill between the two writes leaves the index (and the stream
        # time kept with it) behind, and the events read again index their orders anew (OrderBook.apply);
        # the other way round, they would be judged at a stream time ahead of them.
        batches = [orders.open(part.number), part.index.open()]
        orders.batch, book.index = batches[0], part.index
        worker.take_derived()  # nothing of another batch
        produced, applied, rewinds = [], [], []
        positions = part.positions
        started_at = part.stream_time
        try:
            for event in events:
                message = event.message
                verdict = positions.judge(message.tp, message.offset, part.starts[message.tp])
                if verdict is Verdict.PROCESS and message.offset < part.applied[message.tp]:
                    verdict = Verdict.DONE  # applied by a stored batch: its acknowledgement is what is missing
                if verdict is Verdict.REWIND:
                    rewinds.append((message.tp, positions.rewind_to(message.tp), message.offset))
                if verdict is Verdict.DONE:
                    # Applied in a stored batch, but its acknowledgement was not committed: a crash or a
                    # move came before the commit (Faust reads on from the committed offset), or a rebalance
                    # that began before the last recovery ended refused the commit and Faust sought back.
                    applied.append(event)
                if verdict is not Verdict.PROCESS:
                    continue
                try:
                    outputs = handle(message, part)
                except Exception as exc:  # one event's failure must not cost the rest of the batch
                    log.exception("%s/%d/%d could not be processed; dead-lettered", message.topic,
                                  message.partition, message.offset)
                    book.count_failed()
                    outputs = [messages.rejected(message.topic, message.partition, message.offset,
                                                 f"could not be processed: {type(exc).__name__}: {exc}",
                                                 part.stream_time or clock.now(), _order_id(message.key))]
                produced += [(output, message) for output in outputs]
                applied.append(event)
            if now is not None:
                fired = book.fire_due(max(now, part.stream_time or now))
                protocol.metrics.observe_firings(fired, clock.now())
                produced += [(output, None) for output in fired]
            if part.stream_time != started_at:
                part.index.keep_stream_time(part.stream_time)
            for tp in {event.message.tp for event in events}:  # closing keys: see tables/deadlines.py
                if (position := positions.next_offset(tp, part.starts[tp])) > part.applied[tp]:
                    part.index.keep_read_position(tp.topic, position)
                    part.applied[tp] = position
            return batches, records(produced), applied, rewinds
        finally:
            orders.batch, book.index = None, None
            part.index.close()

    def records(produced: list) -> list[Record]:
        out: list[Record] = []
        for output, message in produced:
            where = (message.topic, message.partition, message.offset, message.value) if message else ("", None, None, b"")
            spec, record = messages.output_record(output, *where)
            out.append((spec.name, messages.output_key(output), codecs[spec.name].encode(record), None))
            if worker.echo and output["output"] != "stock_request":
                echoed.append(describe(output))
        return out + worker.take_derived()

    echoed: list[str] = []

    async def run_batch(part: Partition, events: list) -> None:
        where = f"order-events/{part.number}"
        book.tally["batches"] += 1
        try:
            for tp in {event.message.tp for event in events}:
                await start_offset(tp, part)
            now = await safe_time(part)
            batches, out, applied, rewinds = apply(part, events, now)
            for tp, start, seen in rewinds:
                log.warning("%s/%d: offsets %d..%d were never delivered; reading them again", tp.topic,
                            tp.partition, start, seen - 1)
                await app.consumer.seek(tp, start)
        except Exception as exc:  # the read positions moved past these events: they must not be skipped
            await protocol.fail(where, exc)
            return

        async def ack() -> None:
            for event in applied:
                part.held.setdefault(event.message.tp, []).append(event)
            for tp in list(part.held):
                if not part.positions.rereading(tp):
                    for event in part.held.pop(tp):
                        event.ack()

        lines, echoed[:] = list(echoed), []
        if await protocol.complete(where, out, batches, lambda: owned.get(part.number) is part, ack, len(events)):
            if not app.should_stop:  # a stopping worker's tables may have closed their databases already
                part.pending = len(part.index)
            for line in lines:
                print(line, flush=True)

    @app.agent(source, name="orders")
    async def process(stream):
        async for events in stream.noack_take(BATCH_SIZE, within=BATCH_WAIT):
            for number, group in by_partition(events):
                part = owned.get(number)
                if part is None:  # not recovered here yet, or moved: not acked, its owner reads it
                    continue
                async with part.lock:
                    if owned.get(number) is part:
                        await run_batch(part, group)

    @app.timer(interval=worker.config.timer_interval)
    async def fire_due() -> None:
        if app.should_stop:
            return
        assigned = assigned_now()
        for part in [part for part in owned.values() if part.number in assigned]:
            for tp, start in part.positions.stalled_rereads(STALLED_REREAD_S):
                log.warning("%s/%d: the re-read from offset %d has not come; reading again", tp.topic, tp.partition,
                            start)
                await app.consumer.seek(tp, start)
            if part.lock.locked():
                continue  # the agent is at it; its batch fires what is due
            now = await safe_time(part)
            if now is None or not part.index.due_by(now):
                continue
            async with part.lock:
                if owned.get(part.number) is part:
                    await run_batch(part, [])

    async def index_stored_orders(part: Partition) -> bool:
        """Index, once, the orders a partition held before it had a deadline index (tables/deadlines.py),
        INDEX_BATCH orders per batch through the protocol. False if the partition left meanwhile."""
        if part.index.indexed():
            return True
        stored = orders.partition_items(part.number)
        tp = TP(topics.ORDER_EVENTS.name, part.number)
        last = False
        while not last:
            batches = [orders.open(part.number), part.index.open()]  # finished orders get their retention
            orders.batch, book.index = batches[0], part.index
            try:
                last = book.index_orders(itertools.islice(stored, INDEX_BATCH)) < INDEX_BATCH
                if last:
                    part.index.mark_indexed()
            finally:
                orders.batch, book.index = None, None
                part.index.close()
            if not await protocol.complete(f"order-events/{part.number} (indexing its stored orders)", [], batches,
                                           lambda: tp in app.consumer.assignment(), _nothing):
                return False
        return True

    listing_locks: dict[int, asyncio.Lock] = {}

    async def list_stored_orders(number: int) -> None:
        """Build, once, the listing (tables/listing.py) of a partition whose orders were restored
        without it; the order API reads the partition whole meanwhile. One build at a time per
        partition: a recovery cut short by a rebalance may still be at it when the next begins."""
        async with listing_locks.setdefault(number, asyncio.Lock()):
            await build_listing(number)

    async def build_listing(number: int) -> None:
        listing = orders.listing(partition_db(worker.orders_table, number))
        if listing.current():
            return
        started, listed = time.monotonic(), 0
        for listed in listing.rebuild(decode):
            await asyncio.sleep(0)
            if number not in assigned_now():  # gone: its next owner builds it (this one is behind)
                return
        log.info("order-events/%d: listed its %d stored orders by status in %.1f s", number, listed,
                 time.monotonic() - started)

    def assigned_now() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topics.ORDER_EVENTS.name}

    @worker.orders_table.on_recover
    async def recovered() -> None:
        assigned = sorted(assigned_now())
        assignments[0] += 1
        url = taken_url()  # read with the assignment, before any await
        if url is not None:
            check_url(url, assignments[0])
        for number in set(owned) - set(assigned):  # left while an earlier recovery was still adding it
            owned.pop(number)
        for number in assigned:
            if number in owned:
                continue
            index = PartitionIndex(deadlines, number)
            part = Partition(number, index, stream_time=index.stream_time())
            try:
                await list_stored_orders(number)
                if await index_stored_orders(part) and number in assigned_now():
                    part.pending = len(part.index)
                    owned[number] = part
            except Exception as exc:  # Faust would resume the streams anyway, with this partition unserved
                await protocol.fail(f"order-events/{number} (indexing its stored orders)", exc)
        recovered_once.set()
        log.info("orders recovered: about %d deadlines pending on this worker (partitions %s)", pending_deadlines(),
                 assigned)

    assignments = [0]  # assignments recovered so far
    url_checks: set[asyncio.Task] = set()

    def check_url(url: str, seen: int) -> None:
        """Stop the worker if its URL stays taken. The other member may be this worker's own former
        membership: a worker that rejoins under a new member id stays in the group under the old one
        until its session times out, and the assignment then lists its URL twice. That clears with
        the next assignment; a second worker with this URL does not."""
        async def refuse() -> None:
            await asyncio.sleep(3 * app.conf.broker_session_timeout)
            while app.rebalancing:
                await asyncio.sleep(0.5)
            # A worker stopping meanwhile stops cleanly: its last assignment proves nothing any more.
            if not app.should_stop and assignments[0] == seen and taken_url() == url:
                await protocol.fail("the order API", ValueError(
                    f"another worker of the group advertises this worker's URL {url}: give each worker a "
                    "web_advertise (or web_bind) the others reach it at"))
        task = asyncio.get_running_loop().create_task(refuse())
        url_checks.add(task)
        task.add_done_callback(url_checks.discard)

    def taken_url() -> str | None:
        """This worker's URL if another member advertises it too. The group's table map (Faust's
        assignor) has one entry per URL: the members sharing one see a single member's partitions
        under it, and every fan-out would take that member's orders for theirs, or miss them. Both
        sides come from the same assignment."""
        url = str(app.conf.canonical_url)
        listed = set(app.router.tables_metadata().get(url, {}).get(orders_changelog, []))
        mine = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == orders_changelog}
        return None if listed == mine else url

    @app.on_partitions_revoked.connect
    async def revoked(_app, revoked, **_kwargs) -> None:
        # Its timers, stream time, read positions and held work leave with the partition (either of its
        # input topics going); if it comes back it is judged afresh from its committed offsets and its
        # index, read from the table again. A batch of it still in flight stops before its changelog
        # (not owned any more); waiting for its lock means none is left when the rebalance goes on.
        gone = [owned.pop(tp.partition) for tp in revoked if tp.topic in inputs and tp.partition in owned]
        for part in gone:
            async with part.lock:
                pass

    def pending_deadlines() -> int:
        return sum(part.pending for part in owned.values())

    def readiness() -> dict:
        """For /ready and the metrics: the order-events partitions assigned here and those recovered,
        whether no rebalance is under way, and each recovered input partition's lag (what the broker's
        highwater says is there, less what is applied)."""
        try:
            assigned = sorted(assigned_now())
        except ConsumerNotStarted:  # still starting: nothing assigned yet, and not ready
            return {"assigned": [], "recovered": [], "lags": {}, "settled": False}
        lags, recovered = {}, [part for part in owned.values() if part.number in assigned]
        for part in recovered:
            for tp, start in list(part.starts.items()):
                if (highwater := app.consumer.highwater(tp)) is not None:
                    lags[(tp.topic, tp.partition)] = max(0, highwater - part.positions.next_offset(tp, start))
        return {"assigned": assigned, "recovered": sorted(part.number for part in recovered), "lags": lags,
                "settled": recovered_once.is_set() and not app.rebalancing}

    worker.pending_deadlines = pending_deadlines
    worker.readiness = readiness


async def _nothing() -> None:
    """Nothing to acknowledge: a batch of the worker's own (indexing stored orders)."""


def _order_id(key: bytes | None) -> str | None:
    try:
        return key.decode() if key else None
    except UnicodeDecodeError:
        return None
