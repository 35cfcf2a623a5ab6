"""Records as a reader of the newest schema version sees them, for the codec tests."""
from __future__ import annotations

from orderflow.streams.kafka.codec import schema_versions


def complete(name: str, record: dict) -> dict:
    """The record as a reader of the newest version of `name` sees it."""
    return with_defaults(schema_versions(name)[-1][1], record)


def with_defaults(schema: dict, record: dict) -> dict:
    """The record with every field of `schema` spelled out, nested records' too: a reader fills
    absent fields with their defaults."""
    return _filled(schema, record, {})


def _filled(schema, value, named: dict):
    if isinstance(schema, str):
        schema = named.get(schema, schema)
    if isinstance(schema, list):  # a union: the branch that fits (records are the only nested shape here)
        records = [branch for branch in schema if isinstance(branch, dict) or branch in named]
        return value if value is None or not isinstance(value, (dict, list)) or not records else \
            _filled(records[0], value, named)
    if not isinstance(schema, dict):
        return value
    if schema["type"] == "record":
        named[schema["name"]] = schema
        return {field["name"]: _filled(field["type"], value.get(field["name"], field.get("default")), named)
                for field in schema["fields"]}
    if schema["type"] == "array":
        return [_filled(schema["items"], item, named) for item in value]
    if schema["type"] in ("enum", "fixed"):
        named[schema["name"]] = schema
    return value
