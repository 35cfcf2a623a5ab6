"""Kafka clients for the CLI: publishing upstream events, and tailing a topic."""
from __future__ import annotations

import json
import time
from typing import Callable, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.streams.book.replay import read_lines
from orderflow.streams.config import Config
from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.admin import client_settings
from orderflow.streams.kafka.codec import SchemaError, codec_for_topic
from orderflow.streams.lifecycle import contract


class Publisher:
    """Sends upstream events, Avro-encoded: order events to order-events keyed by order_id,
    warehouse events (stock, prices) to inventory-events keyed by sku_id."""

    def __init__(self, config: Config):
        self._producer = AIOKafkaProducer(**client_settings(config), linger_ms=5)

    async def __aenter__(self) -> "Publisher":
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._producer.stop()

    @staticmethod
    def message(event: dict) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of the event; ValueError says why the event breaks the contract."""
        if contract.is_inventory(event):
            spec, key, codec, problem = (topics.INVENTORY_EVENTS, "sku_id", messages.INVENTORY,
                                         contract.inventory_problem(event))
        else:
            spec, key, codec, problem = topics.ORDER_EVENTS, "order_id", messages.EVENTS, contract.problem(event)
        if problem:
            raise ValueError(problem)
        return spec.name, event[key].encode(), codec.encode(event)

    async def send_event(self, event: dict) -> None:
        topic, key, value = self.message(event)
        await self._producer.send(topic, value, key=key)

    async def send_raw(self, key: bytes | None, value: bytes) -> None:
        await self._producer.send(topics.ORDER_EVENTS.name, value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


async def publish_lines(config: Config, lines: TextIO, progress: Callable[[int, int], None],
                        report: Callable[[str], None] = print) -> tuple[int, int]:
    """Publish every valid JSON line; report each invalid one with its number. Returns (sent, invalid).

    progress(sent, read) is called now and then and at the end; read: bytes of `lines` read so far.
    """
    sent = invalid = read = 0
    last = time.monotonic()

    def counted():
        nonlocal read
        for text in lines:
            read += len(text.encode(errors="replace"))
            yield text

    async with Publisher(config) as publisher:
        for line in read_lines(counted()):
            try:
                if line.event is None:
                    raise ValueError(line.problem)
                await publisher.send_event(line.event)
            except (ValueError, SchemaError) as exc:
                invalid += 1
                report(str(exc) if line.event is None else f"line {line.number}: {exc}")
                continue
            sent += 1
            if time.monotonic() - last >= 0.1:
                last = time.monotonic()
                progress(sent, read)
        await publisher.flush()
    progress(sent, read)
    return sent, invalid


async def tail_topic(config: Config, spec: topics.TopicSpec, from_beginning: bool, max_messages: int | None,
                     idle_timeout: float | None, echo: Callable[[str], None]) -> int:
    """Print a topic's messages as JSON lines; undecodable ones are shown with their error."""
    codec = codec_for_topic(spec)
    consumer = AIOKafkaConsumer(**client_settings(config), enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    shown = 0
    try:
        await consumer.start()
        await consumer.topics()  # refreshes the metadata
        partitions = [TopicPartition(spec.name, p) for p in sorted(consumer.partitions_for_topic(spec.name) or [])]
        if not partitions:
            raise SystemExit(f"topic {spec.name} does not exist yet (is a worker running?)")
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        while max_messages is None or shown < max_messages:
            batch = await consumer.getmany(timeout_ms=int((idle_timeout or 1.0) * 1000))
            if not batch and idle_timeout is not None:
                break
            for message in (m for records in batch.values() for m in records):
                try:
                    echo(messages.to_json(codec.decode(message.value)))
                except SchemaError as why:
                    echo(json.dumps({"undecodable": str(why), "partition": message.partition, "offset": message.offset}))
                shown += 1
                if max_messages is not None and shown >= max_messages:
                    break
    finally:
        await consumer.stop()
    return shown
