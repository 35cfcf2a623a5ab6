"""Another Avro implementation (avro-python3) reads what the codec publishes, and the codec reads what it writes."""
from __future__ import annotations

import importlib.resources
import io
import json

import avro.io
import avro.schema
import pytest
from avro.schemanormalization import Fingerprint, ToParsingCanonicalForm

from orderflow.streams.kafka import topics
from orderflow.streams.kafka.codec import codec_for_topic, schema_versions
from support.schemas import complete

T0 = 1_767_225_600_000

ORDER_CREATED = {
    "event_id": "evt-th-1", "event_type": "ORDER_CREATED", "order_id": "TH-880001", "event_time": T0,
    "shop_id": "shop-th-7", "region": "TH", "buyer_id": "buyer-77", "currency": "THB",
    "line_items": [
        {"sku_id": "SKU-RICE-5KG", "product_name": "ข้าวหอมมะลิ 5 kg", "quantity": 1, "unit_price": "289.00"},
        {"sku_id": "SKU-CHILI", "product_name": "Chili paste", "quantity": 3, "unit_price": "45.50"},
    ],
    "total_amount": "425.50",
    "shipping_address": {
        "recipient_name": "Somchai P.", "phone": "+66 81 234 5678", "line1": "99 Sukhumvit Rd", "line2": None,
        "city": "Bangkok", "postcode": "10110", "country": "TH",
    },
    "channel": "VIDEO",
}
CASES = [
    (topics.ORDER_EVENTS, ORDER_CREATED),
    (topics.STATUS_CHANGES, {
        "output_id": "sc-TH-880001-1", "order_id": "TH-880001", "at": T0, "from_status": None,
        "to_status": "UNPAID", "reason": "CREATED", "initiator": None, "region": "TH", "shop_id": "shop-th-7",
        "event_id": "evt-th-1",
    }),
    (topics.ALERTS, {
        "output_id": "al-TH-880001-pac", "order_id": "TH-880001", "at": T0 + 50 * 3_600_000,
        "kind": "PAYMENT_AFTER_CANCEL", "region": "TH", "shop_id": "shop-th-7", "detail": {"amount": "425.50"},
    }),
    (topics.DEAD_LETTERS, {
        "output_id": "dl-TH-880001-1", "order_id": "TH-880001", "at": T0, "reason": "PACKAGE_SHIPPED while UNPAID",
        "source_topic": "order-events", "partition": 5, "offset": 123_456_789_012,
        "payload": b"\xc3\x01" + bytes(range(8)) + b"\x00\xff", "event": json.dumps({"event_id": "evt-th-9"}),
    }),
]
IDS = [spec.name for spec, _ in CASES]


def newest_schema(name: str) -> avro.schema.Schema:
    version = schema_versions(name)[-1][0]
    text = (importlib.resources.files("orderflow.schemas") / f"{name}.v{version}.avsc").read_text(encoding="utf-8")
    return avro.schema.parse(text)


@pytest.mark.parametrize(("spec", "record"), CASES, ids=IDS)
def test_avro_python3_reads_what_we_publish(spec, record):
    message = codec_for_topic(spec).encode(record)
    schema = newest_schema(spec.schema)
    assert message[:2] == b"\xc3\x01"
    assert message[2:10] == Fingerprint(ToParsingCanonicalForm(schema), "CRC-64-AVRO")
    body = io.BytesIO(message[10:])
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(body))
    assert decoded == complete(spec.schema, record)
    assert body.tell() == len(message) - 10


@pytest.mark.parametrize(("spec", "record"), CASES, ids=IDS)
def test_we_read_what_avro_python3_writes(spec, record):
    schema = newest_schema(spec.schema)
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(complete(spec.schema, record), avro.io.BinaryEncoder(body))
    message = b"\xc3\x01" + Fingerprint(ToParsingCanonicalForm(schema), "CRC-64-AVRO") + body.getvalue()
    assert codec_for_topic(spec).decode(message) == complete(spec.schema, record)
