"""Hostile messages for order-events, each with the dead-letter reason it must get (tests/*/test_reliability*.py)."""
from __future__ import annotations

import copy
import io
import json
import random
import re
from dataclasses import dataclass

import fastavro

from orderflow.streams.kafka import messages
from orderflow.streams.kafka.codec import MAGIC, codec_for, fingerprint, schema_versions
from support.orders import ADDRESS, cancel_response, created, event, paid, review, shipped, update

MB_TEXT = 1_000_000   # "1 MB strings"
LONG_ID = 10 * 1024   # "an order id of 10 KB"


@dataclass
class Bad:
    name: str
    key: bytes | None
    value: bytes
    reason: str  # a regular expression the dead letter's reason must match


def _newest_schema() -> dict:
    return schema_versions("OrderEvent")[-1][1]


def _header() -> bytes:
    return MAGIC + fingerprint(_newest_schema())


def _full(event: dict) -> dict:
    """The event as a complete OrderEvent record (every optional field null)."""
    names = [f["name"] for f in _newest_schema()["fields"]]
    return {name: event.get(name) for name in names}


def _with_writer_schema(event: dict, change) -> bytes:
    """The message a writer with a slightly different OrderEvent schema would produce, under the
    real schema's fingerprint: e.g. an enum with a symbol the reader does not have."""
    schema = copy.deepcopy(_newest_schema())
    change(schema)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, _write_hint=False, _force=True), _full(event))
    return _header() + out.getvalue()


def _field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def _event_types() -> list[str]:
    """The newest OrderEvent's event_type symbols: a symbol added by a writer gets the next index."""
    return _field(_newest_schema(), "event_type")["type"]["symbols"]


def _add_symbol(field: str, symbol: str):
    def change(schema):
        kind = _field(schema, field)["type"]
        enum = kind if isinstance(kind, dict) else next(b for b in kind if isinstance(b, dict))
        enum["symbols"].append(symbol)
    return change


def _as_bytes(field: str):
    def change(schema):
        _field(schema, field)["type"] = "bytes"
    return change


def hostile_messages(t0: int) -> list[Bad]:
    """Every kind of bad input the issue names, and a few more; order ids are hostile-bad-N."""
    rng = random.Random(6)
    n = iter(range(1, 1000))

    def oid() -> str:
        return f"hostile-bad-{next(n)}"

    def raw(event: dict) -> bytes:
        return messages.EVENTS.encode(event)

    def case(name: str, event_or_bytes, reason: str, key: bytes | None = None) -> Bad:
        if isinstance(event_or_bytes, dict):
            value = raw(event_or_bytes)
            key = event_or_bytes["order_id"].encode() if key is None else key
        else:
            value = event_or_bytes
        return Bad(name, key, value, reason)

    valid = raw(created("hostile-template", t0))
    reply = codec_for("StockReply").encode({"problem": "OUT_OF_STOCK", "order_id": "hostile-reply", "line": 0,
                                          "sku_id": "SKU-1", "at": t0, "quantity": 1, "unit_price": "1.00"})
    undecodable = r"^undecodable message: "
    cases = [
        # --- bytes that are no OrderEvent -------------------------------------------------------------------
        case("random bytes", bytes(rng.randrange(256) for _ in range(300)),
             undecodable + r"not Avro single-object encoding \(bad magic\)$", b"hostile-noise"),
        case("empty message", b"", undecodable + r"not Avro single-object encoding \(bad magic\)$", b"hostile-empty"),
        case("JSON instead of Avro", json.dumps(created("hostile-json", t0)).encode(),
             undecodable + r"not Avro single-object encoding \(bad magic\)$", b"hostile-json"),
        case("magic and random fingerprint", MAGIC + bytes(rng.randrange(256) for _ in range(40)),
             undecodable + r"unknown writer schema fingerprint 0x[0-9a-f]{16} for OrderEvent$", b"hostile-fp"),
        case("truncated header", valid[:5], undecodable + r"truncated header: unknown writer schema fingerprint",
             b"hostile-header"),
        case("truncated Avro (valid message cut short)", valid[:len(valid) // 2],
             undecodable + r"truncated or corrupt Avro body", b"hostile-template"),
        case("truncated Avro (last byte missing)", valid[:-1], undecodable + r"truncated or corrupt Avro body",
             b"hostile-template"),
        case("valid Avro with bytes left over", valid + b"\x00\x01\x02\x03\x04",
             undecodable + r"corrupt Avro body: 5 bytes left over after the record$", b"hostile-template"),
        case("another schema: a StockReply", reply,
             undecodable + r"unknown writer schema fingerprint 0x[0-9a-f]{16} for OrderEvent "
                           r"\(it is StockReply v1: wrong topic\?\)$", b"hostile-reply"),
        case("another schema: a StatusChange",
             codec_for("StatusChange").encode({"output_id": "x", "order_id": "hostile-sc", "at": t0,
                                               "from_status": None, "to_status": "UNPAID", "reason": "CREATED"}),
             undecodable + r"unknown writer schema fingerprint 0x[0-9a-f]{16} for OrderEvent "
                           rf"\(it is StatusChange v{schema_versions('StatusChange')[-1][0]}: wrong topic\?\)$",
             b"hostile-sc"),
        case("string length beyond the message", _header() + b"\xd0\x0f" + b"abc",
             undecodable + r"truncated or corrupt Avro body: ValueError: length 1000 at byte 12 does not fit the 15-byte message$",
             b"hostile-len"),
        case("varint longer than 10 bytes", _header() + b"\xff" * 12,
             undecodable + r"truncated or corrupt Avro body: ValueError: varint longer than 10 bytes$", b"hostile-var"),
        case("invalid UTF-8 in a string", _with_writer_schema(
                {**created("hostile-utf8", t0), "event_id": b"ev-\xff\xfe"}, _as_bytes("event_id")),
             undecodable + r"truncated or corrupt Avro body: UnicodeDecodeError", b"hostile-utf8"),
        # --- unknown enum symbols: an index the reader's enum does not have --------------------------------------
        case("unknown event_type symbol", _with_writer_schema(
                {**created(oid(), t0), "event_type": "PARCEL_TELEPORTED"}, _add_symbol("event_type", "PARCEL_TELEPORTED")),
             undecodable + rf"truncated or corrupt Avro body: ValueError: index {len(_event_types())} is out of "
                           r"range for orderflow\.EventType$", b"hostile-enum-1"),
        case("unknown decision symbol", _with_writer_schema(
                cancel_response(oid(), t0, "MAYBE"), _add_symbol("decision", "MAYBE")),
             undecodable + r"truncated or corrupt Avro body: ValueError: index 2 is out of range for "
                           r"orderflow\.CancelDecision$", b"hostile-enum-2"),
        case("unknown logistics status symbol", _with_writer_schema(
                update(oid(), t0, status="LOST_IN_SPACE"), _add_symbol("status", "LOST_IN_SPACE")),
             undecodable + r"truncated or corrupt Avro body: ValueError: index 3 is out of range for "
                           r"orderflow\.LogisticsStatus$", b"hostile-enum-3"),
        case("the reader's catch-all UNKNOWN event_type", {**created(oid(), t0), "event_type": "UNKNOWN"},
             r"^unknown event_type 'UNKNOWN'$"),
        # --- Avro-valid events that break the contract -------------------------------------------------------------
        case("ORDER_CREATED without its essential fields",
             event("ORDER_CREATED", oid(), t0), r"^ORDER_CREATED lacks shop_id, region, buyer_id, currency, line_items, "
                                                r"total_amount, shipping_address$"),
        case("ORDER_PAID without amount", {**paid(oid(), t0), "amount": None}, r"^ORDER_PAID lacks amount$"),
        case("PACKAGE_SHIPPED without tracking number", {**shipped(oid(), t0), "tracking_number": ""},
             r"^PACKAGE_SHIPPED lacks tracking_number$"),
        case("empty event_id", {**created(oid(), t0), "event_id": ""}, r"^missing envelope field event_id$"),
        case("empty order_id", {**created("", t0)}, r"^missing envelope field order_id$", key=b""),
        case("shipping address without recipient and phone",
             created(oid(), t0, shipping_address={**ADDRESS, "recipient_name": "", "phone": ""}),
             r"^shipping_address lacks recipient_name, phone$"),
        # --- absurd values ---------------------------------------------------------------------------------------
        case("negative payment", {**paid(oid(), t0), "amount": "-19.98"}, r"^amount out of range: '-19\.98'$"),
        case("payment of NaN", {**paid(oid(), t0), "amount": "NaN"}, r"^amount out of range: 'NaN'$"),
        case("payment of 1e30", {**paid(oid(), t0), "amount": "1e30"}, r"^amount out of range: '1e30'$"),
        case("payment that is no number", {**paid(oid(), t0), "amount": "lots"}, r"^not a decimal amount: 'lots'$"),
        case("negative unit price", created(oid(), t0, line_items=[
                {"sku_id": "s", "product_name": "p", "quantity": 1, "unit_price": "-9.99"}]),
             r"^line item 1: unit_price amount out of range: '-9\.99'$"),
        case("negative total", created(oid(), t0, total_amount="-1"), r"^amount out of range: '-1'$"),
        case("negative quantity", created(oid(), t0, line_items=[
                {"sku_id": "s", "product_name": "p", "quantity": -3, "unit_price": "1.00"}]),
             r"^line item 1: quantity must be a whole number from 1 to 100000$"),
        case("a billion units", created(oid(), t0, line_items=[
                {"sku_id": "s", "product_name": "p", "quantity": 10**9, "unit_price": "1.00"}]),
             r"^line item 1: quantity must be a whole number from 1 to 100000$"),
        case("501 line items", created(oid(), t0, line_items=[
                {"sku_id": f"s{i}", "product_name": "p", "quantity": 1, "unit_price": "1.00"} for i in range(501)]),
             r"^line_items must be a list of at most 500 items$"),
        case("event in the year 3000", created(oid(), 32_503_680_000_000),
             r"^event_time 32503680000000 is outside 2000\.\.2100$"),
        case("negative event time", created(oid(), -1), r"^event_time -1 is outside 2000\.\.2100$"),
        case("rating 9", review(oid(), t0, rating=9), r"^rating must be 1 to 5, not 9$"),
        case("100 KB comment", review(oid(), t0, rating=5) | {"comment": "z" * 100_000},
             r"^field comment is 100000 characters long \(at most 4096\)$"),
        case("10 KB order id", created("o" * LONG_ID, t0), rf"^field order_id is {LONG_ID} characters long \(at most 128\)$"),
        case("10 KB event id", {**created(oid(), t0), "event_id": "e" * LONG_ID},
             rf"^field event_id is {LONG_ID} characters long \(at most 128\)$"),
        case("region no policy serves", created(oid(), t0, region="XX"),
             r"^region 'XX' is not served by the region policy$"),
    ]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names)
    return cases


def megabyte_messages(t0: int) -> list[Bad]:
    """Events with 1 MB strings (each message just under the usual 1 MiB limit of a Kafka request)."""
    return [
        Bad("1 MB product name", b"hostile-mb-1", messages.EVENTS.encode(created("hostile-mb-1", t0, line_items=[
                {"sku_id": "s", "product_name": "x" * MB_TEXT, "quantity": 1, "unit_price": "1.00"}])),
            rf"^field (line_items\.)?product_name is {MB_TEXT} characters long \(at most 4096\)$"),
        Bad("1 MB cancellation reason", b"hostile-mb-2", messages.EVENTS.encode(
                event("BUYER_CANCEL_REQUESTED", "hostile-mb-2", t0, reason="y" * MB_TEXT)),
            rf"^field reason is {MB_TEXT} characters long \(at most 4096\)$"),
    ]


def semantic_rejections(t0: int) -> tuple[list[dict], list[Bad]]:
    """A valid order, then events its status does not allow: (valid events, bad messages)."""
    order = "hostile-status-1"
    first = created(order, t0)
    early_ship = shipped(order, t0 + 1000)
    answer = cancel_response(order, t0 + 2000, "ACCEPT")
    bad = [Bad("shipped while unpaid", order.encode(), messages.EVENTS.encode(early_ship),
               r"^PACKAGE_SHIPPED is not allowed in status UNPAID"),
           Bad("cancel answer without a request", order.encode(), messages.EVENTS.encode(answer),
               r"^no cancellation request is pending$")]
    return [first], bad


def check_reason(bad: Bad, reason: str) -> bool:
    return re.search(bad.reason, reason) is not None


__all__ = ["Bad", "LONG_ID", "MB_TEXT", "check_reason", "hostile_messages", "megabyte_messages",
           "semantic_rejections"]
