"""Between the core's JSON form (DOMAIN.md) and the Avro records on the topics."""
from __future__ import annotations

import base64
import json

from orderflow.streams.kafka import topics
from orderflow.streams.kafka.codec import codec_for_topic
from orderflow.streams.lifecycle.order import output_id

EVENTS = codec_for_topic(topics.ORDER_EVENTS)
INVENTORY = codec_for_topic(topics.INVENTORY_EVENTS)
REQUESTS = codec_for_topic(topics.STOCK_REQUESTS)
REPLIES = codec_for_topic(topics.STOCK_REPLIES)

_STATUS_FIELDS = ("output_id", "order_id", "at", "from_status", "to_status", "reason", "initiator", "cancel_reason",
                  "region", "shop_id", "event_id")
_NOTICE_FIELDS = ("output_id", "order_id", "at", "kind", "region", "shop_id", "detail")
_CASE_FIELDS = ("output_id", "order_id", "case_id", "case_kind", "from_state", "to_state", "reason", "amount", "at",
                "region", "shop_id", "event_id")
_REQUEST_FIELDS = ("output_id", "action", "order_id", "line", "sku_id", "quantity", "unit_price", "currency",
                   "ordered_at", "at")


def event_from_record(record: dict) -> dict:
    """An OrderEvent record as the flat JSON-form event (absent fields left out, a line's
    `line_id` too: a line without one is numbered by its place)."""
    event = {key: value for key, value in record.items() if value is not None}
    if "line_items" in event:
        event["line_items"] = [{key: value for key, value in item.items() if key != "line_id" or value is not None}
                               for item in event["line_items"]]
    return event


def output_record(output: dict, source_topic: str = "", partition: int | None = None,
                  offset: int | None = None, payload: bytes = b"") -> tuple[topics.TopicSpec, dict]:
    """The topic and Avro record of a core output; dead letters carry the rejected message."""
    kind = output["output"]
    if kind == "stock_request":  # internal: to the SKU's partition of the inventory agent
        return topics.STOCK_REQUESTS, {name: output[name] for name in _REQUEST_FIELDS}
    spec = topics.OUTPUT_TOPICS[kind]
    if kind == "status_change":
        return spec, {name: output.get(name) for name in _STATUS_FIELDS}
    if kind == "case_update":
        return spec, {name: output.get(name) for name in _CASE_FIELDS}
    if kind == "dead_letter":
        event = output.get("event")
        return spec, {
            "output_id": output["output_id"], "order_id": output.get("order_id"), "at": output["at"],
            "reason": output["reason"], "source_topic": source_topic, "partition": partition, "offset": offset,
            "payload": payload, "event": _event_json(event, payload),
        }
    return spec, {name: output.get(name) for name in _NOTICE_FIELDS}


def output_key(output: dict) -> bytes:
    """The message key of a core output: the SKU for a stock request, else the order."""
    return (output.get("sku_id") if output["output"] == "stock_request" else output.get("order_id") or "").encode()


def rejected(topic: str, partition: int, offset: int, reason: str, at: int, order_id: str | None = None) -> dict:
    """The dead letter of an input message that never became a step of the core (undecodable, or
    its step failed); its id comes from where the message was read, so a retry repeats it."""
    return {"output": "dead_letter", "output_id": output_id("", f"{topic}/{partition}/{offset}", 0),
            "order_id": order_id, "at": at, "reason": reason, "event": None}


# The decoded event rides along for readers without Avro tools, unless the original
# bytes are large: two copies of a near-1 MB message would exceed Kafka's request size.
MAX_EVENT_COPY = 64 * 1024


def _event_json(event: dict | None, payload: bytes) -> str | None:
    if event is None or len(payload) > MAX_EVENT_COPY:
        return None
    return json.dumps(event, default=str)


def to_json(record: dict) -> str:
    """A decoded record as one JSON line; bytes as UTF-8 text when they are, else base64."""
    def default(value):
        if isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                return "base64:" + base64.b64encode(value).decode()
        raise TypeError(f"cannot show {type(value).__name__}")
    return json.dumps(record, default=default, ensure_ascii=False)
