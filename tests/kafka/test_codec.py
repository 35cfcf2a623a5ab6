"""The hot-path codec: round trips, reading older versions, and SchemaError for every kind of bad input."""
from __future__ import annotations

import io
import json
import random
import re

import fastavro
import pytest

from orderflow.streams.kafka import messages, topics
from orderflow.streams.kafka.codec import (MAGIC, Codec, SchemaError, codec_for, codec_for_topic, fingerprint,
                                           schema_versions)
from support.schemas import complete

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms

ADDRESS = {
    "recipient_name": "Amelia Hart", "phone": "+44 7700 900123", "line1": "12 Canal Street",
    "line2": "Flat 3", "city": "Manchester", "postcode": "M1 3HE", "country": "GB",
}
ORDER_CREATED = {
    "event_id": "evt-0001", "event_type": "ORDER_CREATED", "order_id": "GB-5771230001", "event_time": T0,
    "shop_id": "shop-gb-42", "region": "GB", "buyer_id": "buyer-9001", "currency": "GBP",
    "line_items": [
        {"sku_id": "SKU-TEE-M-BLK", "product_name": "Organic tee, black, M", "quantity": 2, "unit_price": "12.50"},
        {"sku_id": "SKU-MUG-01", "product_name": "Enamel mug ☕", "quantity": 1, "unit_price": "8.99"},
    ],
    "total_amount": "33.99", "shipping_address": ADDRESS, "channel": "LIVE",
}
ORDER_EVENTS = [
    ORDER_CREATED,
    {"event_id": "evt-0002", "event_type": "ORDER_PAID", "order_id": "GB-5771230001", "event_time": T0 + 60_000,
     "amount": "33.99", "payment_method": "CARD"},
    {"event_id": "evt-0003", "event_type": "SELLER_CANCEL_RESPONSE", "order_id": "GB-5771230001",
     "event_time": T0 + 3_600_000, "decision": "REJECT"},
    {"event_id": "evt-0004", "event_type": "LOGISTICS_UPDATE", "order_id": "TH-880001", "event_time": T0 + 86_400_000,
     "status": "OUT_FOR_DELIVERY", "location": "กรุงเทพมหานคร", "description": "Out for delivery"},
    {"event_id": "evt-0005", "event_type": "REDELIVERY_REQUESTED", "order_id": "TH-880001",
     "event_time": T0 + 2 * 86_400_000,
     "new_address": {"recipient_name": "Somchai P.", "phone": "+66 81 234 5678", "line1": "99 Sukhumvit Rd",
                     "line2": None, "city": "Bangkok", "postcode": None, "country": "TH"}},
    {"event_id": "evt-0006", "event_type": "REVIEW_POSTED", "order_id": "GB-5771230001",
     "event_time": T0 + 9 * 86_400_000, "rating": 5, "comment": "Arrived fast, great quality."},
    {"event_id": "evt-0007", "event_type": "AFTER_SALES_REQUESTED", "order_id": "GB-5771230001",
     "event_time": T0 + 10 * 86_400_000, "kind": "EXCHANGE", "reason": "WRONG_SIZE"},
    # One package of some lines (OrderEvent v4's package_id, and line_ids on PACKAGE_SHIPPED), then its delivery.
    {"event_id": "evt-0009", "event_type": "PACKAGE_SHIPPED", "order_id": "GB-5771230001",
     "event_time": T0 + 86_400_000, "carrier": "Evri", "tracking_number": "EV123456789GB", "package_id": "pkg-A",
     "line_ids": ["1", "3"]},
    {"event_id": "evt-0010", "event_type": "DELIVERED", "order_id": "GB-5771230001",
     "event_time": T0 + 3 * 86_400_000, "package_id": "pkg-A"},
    {"event_id": "evt-0008", "event_type": "DELIVERED", "order_id": "MY-100200", "event_time": T0},
]
SAMPLES = [
    *((topics.ORDER_EVENTS, event) for event in ORDER_EVENTS),
    (topics.STATUS_CHANGES, {
        "output_id": "sc-GB-5771230001-2", "order_id": "GB-5771230001", "at": T0 + 60_000,
        "from_status": "UNPAID", "to_status": "AWAITING_SHIPMENT", "reason": "PAID", "initiator": "BUYER",
        "region": "GB", "shop_id": "shop-gb-42", "event_id": "evt-0002",
    }),
    (topics.STATUS_CHANGES, {
        "output_id": "sc-GB-5771230009-1", "order_id": "GB-5771230009", "at": T0, "to_status": "UNPAID",
        "reason": "CREATED",
    }),
    (topics.STATUS_CHANGES, {  # StatusChange v3
        "output_id": "sc-GB-5771230001-3", "order_id": "GB-5771230001", "at": T0 + 86_400_000,
        "from_status": "AWAITING_SHIPMENT", "to_status": "PARTIALLY_SHIPPING", "reason": "SHIPPED",
        "region": "GB", "shop_id": "shop-gb-42", "event_id": "evt-0009",
    }),
    (topics.REMINDERS, {
        "output_id": "rm-GB-5771230009-15m", "order_id": "GB-5771230009", "at": T0 + 15 * 60_000,
        "kind": "PAYMENT_REMINDER_15M", "region": "GB", "shop_id": "shop-gb-42",
    }),
    (topics.ALERTS, {
        "output_id": "al-TH-880001-sbo", "order_id": "TH-880001", "at": T0 + 72 * 3_600_000,
        "kind": "SHIP_BY_OVERDUE", "region": "TH", "shop_id": "shop-th-7",
        "detail": {"paid_at": str(T0), "ship_by": str(T0 + 72 * 3_600_000)},
    }),
    (topics.ANALYTICS, {
        "output_id": "an-GB-h-1", "window_start": T0, "window_end": T0 + 3_600_000, "granularity": "HOUR",
        "region": "GB", "shop_id": "shop-gb-42", "metric": "sales_amount", "dimension": None,
        "value": "1234.50", "revision": 3,
    }),
    (topics.DEAD_LETTERS, {
        "output_id": "dl-1", "order_id": "MY-100200", "at": T0, "reason": "DELIVERED not allowed in status UNPAID",
        "source_topic": "order-events", "partition": 3, "offset": 2**40,
        "payload": codec_for("OrderEvent").encode(ORDER_EVENTS[-1]),
        "event": json.dumps(ORDER_EVENTS[-1]),
    }),
    (topics.DEAD_LETTERS, {
        "output_id": "dl-2", "at": T0, "reason": "not Avro single-object encoding (bad magic)",
        "source_topic": "order-events", "payload": b"\x00\xffgarbage",
    }),
    (topics.STOCK_REPLIES, {"problem": "OUT_OF_STOCK", "order_id": "GB-5771230009", "line": 0, "sku_id": "SKU-1",
                            "at": T0, "quantity": 2, "available": 1, "unit_price": "9.99"}),
]
SAMPLE_IDS = [f"{spec.name}-{i}" for i, (spec, _) in enumerate(SAMPLES)]


def fastavro_body(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


@pytest.mark.parametrize(("spec", "record"), SAMPLES, ids=SAMPLE_IDS)
def test_round_trip(spec, record):
    codec = codec_for_topic(spec)
    data = codec.encode(record)
    assert data[:2] == MAGIC
    assert data[2:10] == fingerprint(schema_versions(spec.schema)[-1][1])
    assert codec.decode(data) == complete(codec.name, record)


@pytest.mark.parametrize(("spec", "record"), SAMPLES, ids=SAMPLE_IDS)
def test_generated_codec_matches_fastavro(spec, record):
    codec = codec_for_topic(spec)
    schema = fastavro.parse_schema(schema_versions(spec.schema)[-1][1])
    body = fastavro_body(schema, record)
    assert codec.encode(record)[10:] == body
    assert codec.decode(codec.encode(record)) == fastavro.schemaless_reader(io.BytesIO(body), schema)


@pytest.mark.parametrize(("spec", "record"), SAMPLES, ids=SAMPLE_IDS)
def test_corrupted_bodies_decode_like_fastavro(spec, record):
    """Whatever the generated reader accepts, fastavro reads the same; it rejects more only where fastavro is lax.

    fastavro takes a negative enum or union index as a Python index from the end, and varints of any length.
    """
    codec = codec_for_topic(spec)
    schema = fastavro.parse_schema(schema_versions(spec.schema)[-1][1])
    good = codec.encode(record)
    rng = random.Random(7)
    for _ in range(1500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(10, len(data))] = rng.randrange(256)
        data = bytes(data)
        buf = io.BytesIO(data[10:])
        try:
            expected = fastavro.schemaless_reader(buf, schema)
            fastavro_ok = buf.tell() == len(data) - 10
        except Exception:
            fastavro_ok = False
        try:
            decoded = codec.decode(data)
        except SchemaError as error:
            assert not fastavro_ok or re.search(r"index -\d+ is out of range|not a branch index|varint", str(error))
        else:
            assert fastavro_ok and decoded == expected


def test_codecs_are_cached_per_schema():
    assert codec_for("OrderEvent") is codec_for_topic(topics.ORDER_EVENTS)
    assert codec_for_topic(topics.REMINDERS) is codec_for_topic(topics.ALERTS)


def test_v1_message_decodes_with_v2_reader():
    (_, v1), *_ = schema_versions("OrderEvent")
    record = {key: value for key, value in ORDER_CREATED.items() if key != "channel"}
    data = MAGIC + fingerprint(v1) + fastavro_body(v1, record)
    decoded = codec_for("OrderEvent").decode(data)
    assert decoded["channel"] is None
    assert decoded == complete("OrderEvent", record)


def test_package_fields_round_trip_into_the_core_event():
    """A package's events keep package_id and line_ids through Avro, and come out as the JSON-form event."""
    for event in (e for e in ORDER_EVENTS if e.get("package_id")):
        assert messages.event_from_record(codec_for("OrderEvent").decode(codec_for("OrderEvent").encode(event))) \
            == event


def test_v3_message_decodes_without_a_package():
    versions = dict(schema_versions("OrderEvent"))
    shipped = {"event_id": "evt-0009", "event_type": "PACKAGE_SHIPPED", "order_id": "GB-5771230001",
               "event_time": T0, "carrier": "Evri", "tracking_number": "EV1", "line_ids": ["1"]}
    decoded = codec_for("OrderEvent").decode(MAGIC + fingerprint(versions[3]) + fastavro_body(versions[3], shipped))
    assert decoded["package_id"] is None
    assert decoded == complete("OrderEvent", shipped)


def test_bad_v1_messages_raise_schema_error():
    (_, v1), *_ = schema_versions("OrderEvent")
    record = {key: value for key, value in ORDER_CREATED.items() if key != "channel"}
    data = MAGIC + fingerprint(v1) + fastavro_body(v1, record)
    for end in range(len(data)):
        with pytest.raises(SchemaError):
            codec_for("OrderEvent").decode(data[:end])
    bad_union = data[:10] + fastavro_body(v1, {**record, "shop_id": None})[:-1] + b"\x08"  # last union: branch 4
    with pytest.raises(SchemaError, match="index out of range"):
        codec_for("OrderEvent").decode(bad_union)


def test_versions_must_differ_in_more_than_docs():
    _, schema = schema_versions("StockReply")[-1]
    with pytest.raises(SchemaError, match="same canonical form"):
        Codec("StockReply", [(1, schema), (2, {**schema, "doc": "Only the doc changed."})])


def test_schema_shape_without_generated_codec_still_works():
    # A double and a union of two non-null types fall back to fastavro.
    schema = {"type": "record", "name": "Reading", "namespace": "orderflow.test", "fields": [
        {"name": "celsius", "type": "double"},
        {"name": "label", "type": ["null", "string", "long"], "default": None},
    ]}
    codec = Codec("Reading", [(1, schema)])
    for record in ({"celsius": 21.5, "label": "kitchen"}, {"celsius": -3.25, "label": 7}, {"celsius": 0.0}):
        assert codec.decode(codec.encode(record)) == {"label": None, **record}
    with pytest.raises(SchemaError, match="truncated"):
        codec.decode(codec.encode({"celsius": 1.0})[:-1])
    with pytest.raises(SchemaError, match="celsius"):
        codec.encode({"celsius": "warm"})


def test_random_bytes_raise_schema_error():
    codec = codec_for("OrderEvent")
    rng = random.Random(11)
    header = codec.encode(ORDER_CREATED)[:10]
    for _ in range(2000):
        noise = rng.randbytes(rng.randint(0, 80))
        for data in (noise, header + noise):
            try:
                codec.decode(data)
            except SchemaError:
                pass


@pytest.mark.parametrize(("spec", "record"), SAMPLES, ids=SAMPLE_IDS)
def test_every_truncation_raises(spec, record):
    codec = codec_for_topic(spec)
    data = codec.encode(record)
    for end in range(len(data)):
        with pytest.raises(SchemaError):
            codec.decode(data[:end])


def test_wrong_magic():
    data = bytearray(codec_for("OrderEvent").encode(ORDER_CREATED))
    data[0] = 0x00
    with pytest.raises(SchemaError, match="bad magic"):
        codec_for("OrderEvent").decode(bytes(data))
    with pytest.raises(SchemaError, match="bad magic"):
        codec_for("OrderEvent").decode(b'{"event_id": "evt-1"}')


def test_unknown_fingerprint():
    data = codec_for("OrderEvent").encode(ORDER_CREATED)
    forged = MAGIC + bytes(8) + data[10:]
    with pytest.raises(SchemaError, match="unknown writer schema fingerprint 0x0000000000000000"):
        codec_for("OrderEvent").decode(forged)


def test_message_of_another_schema_is_rejected():
    reply = codec_for("StockReply").encode({"problem": "OUT_OF_STOCK", "order_id": "GB-1", "line": 0, "sku_id": "SKU-1", "at": T0, "quantity": 1, "unit_price": "1.00"})
    with pytest.raises(SchemaError, match=r"unknown writer schema fingerprint .*StockReply v1"):
        codec_for("OrderEvent").decode(reply)


def test_absurd_length_prefix():
    header = codec_for("OrderEvent").encode(ORDER_CREATED)[:10]
    huge_string = b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"  # zigzag varint of 2**62 - 1
    for data in (header + huge_string + b"evt", header + b"\x01abc", header + b"\xff" * 20):
        with pytest.raises(SchemaError, match="corrupt"):
            codec_for("OrderEvent").decode(data)


def test_trailing_bytes_rejected():
    data = codec_for("StockReply").encode({"problem": "OUT_OF_STOCK", "order_id": "GB-1", "line": 0, "sku_id": "SKU-1", "at": T0, "quantity": 1, "unit_price": "1.00"})
    with pytest.raises(SchemaError, match="left over"):
        codec_for("StockReply").decode(data + b"\x00")


@pytest.mark.parametrize("data", [None, "text", 42])
def test_non_bytes_input(data):
    with pytest.raises(SchemaError, match="expected bytes"):
        codec_for("OrderEvent").decode(data)


def test_bytearray_and_memoryview_input():
    data = codec_for("OrderEvent").encode(ORDER_CREATED)
    expected = codec_for("OrderEvent").decode(data)
    assert codec_for("OrderEvent").decode(bytearray(data)) == expected
    assert codec_for("OrderEvent").decode(memoryview(data)) == expected


@pytest.mark.parametrize(("change", "field"), [
    ({"order_id": None}, "order_id"),
    ({"event_time": "1767225600000"}, "event_time"),
    ({"event_time": 1.5}, "event_time"),
    ({"event_type": "ORDER_TELEPORTED"}, "event_type"),
    ({"rating": 2**40}, "rating"),
    ({"amount": 19.99}, "amount"),
    ({"line_items": [{"sku_id": "SKU-1", "quantity": 1, "unit_price": "1.00"}]}, "product_name"),
])
def test_bad_record_on_encode_names_the_field(change, field):
    with pytest.raises(SchemaError, match=field):
        codec_for("OrderEvent").encode({**ORDER_CREATED, **change})


def test_missing_required_field_on_encode():
    record = {key: value for key, value in ORDER_CREATED.items() if key != "event_id"}
    with pytest.raises(SchemaError, match="event_id"):
        codec_for("OrderEvent").encode(record)


def test_not_a_record_on_encode():
    with pytest.raises(SchemaError, match="OrderEvent"):
        codec_for("OrderEvent").encode(None)
