"""Schema files: conventions, a schema for every topic, and backward compatibility between versions."""
from __future__ import annotations

import copy
import io

import fastavro
import pytest
from fastavro.read import SchemaResolutionError

from orderflow.streams.kafka.codec import MAGIC, codec_for, fingerprint, schema_names, schema_versions
from orderflow.streams.kafka.schema_compat import check_backward_compatible
from orderflow.streams.kafka.topics import ALL_TOPICS
from orderflow.streams.lifecycle import contract
from orderflow.streams.lifecycle import status as st
from support.schemas import complete, with_defaults

VERSION_PAIRS = [
    (name, old, new)
    for name in schema_names()
    for old, new in zip(schema_versions(name), schema_versions(name)[1:])
]


def walk(schema):
    """Every dict in a raw schema: named types, fields, arrays and maps."""
    if isinstance(schema, dict):
        yield schema
        for key in ("type", "items", "values", "fields"):
            if key in schema:
                yield from walk(schema[key])
    elif isinstance(schema, list):
        for branch in schema:
            yield from walk(branch)


def test_every_topic_has_a_schema():
    for spec in ALL_TOPICS:
        versions = [version for version, _ in schema_versions(spec.schema)]
        assert versions == list(range(1, len(versions) + 1)), f"{spec.schema}: versions must be 1..N"


@pytest.mark.parametrize("name", schema_names())
def test_schema_conventions(name):
    for version, schema in schema_versions(name):
        where = f"{name}.v{version}.avsc"
        assert (schema["name"], schema.get("namespace")) == (name, "orderflow"), where
        fastavro.parse_schema(schema)  # valid Avro, defaults included
        for node in walk(schema):
            assert "logicalType" not in node, f"{where}: times are plain long, readers get ints"
            if "fields" in node:
                for field in node["fields"]:
                    assert field.get("doc"), f"{where}: field {node['name']}.{field['name']} has no doc"


def test_versions_have_distinct_fingerprints():
    for name in schema_names():
        fingerprints = [fingerprint(schema) for _, schema in schema_versions(name)]
        assert len(set(fingerprints)) == len(fingerprints), name


def test_newest_schemas_carry_what_the_core_reads_and_writes():
    """A field or status the core knows needs a new schema version, or it cannot cross a topic."""
    _, events = schema_versions("OrderEvent")[-1]
    fields = {field["name"]: field for field in events["fields"]}
    assert set(contract.ESSENTIAL) <= set(fields["event_type"]["type"]["symbols"])
    named = {*(name for names in contract.ESSENTIAL.values() for name in names), "line_ids", "case_id", "package_id"}
    assert named <= set(fields)
    _, changes = schema_versions("StatusChange")[-1]
    order_status = next(field for field in changes["fields"] if field["name"] == "from_status")["type"][1]
    assert order_status["symbols"] == list(st.STATUSES)  # in the core's order, as each version added its symbol


def sample(schema, named, variant, with_nulls=False):
    """A value for every field; variant cycles enum symbols, with_nulls sets every nullable field to null."""
    schema = named.get(schema, schema) if isinstance(schema, str) else schema
    if isinstance(schema, list):
        if with_nulls and "null" in schema:
            return None
        branches = [branch for branch in schema if branch != "null"]
        return sample(branches[variant % len(branches)], named, variant, with_nulls)
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record":
        return {field["name"]: sample(field["type"], named, variant, with_nulls) for field in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][variant % len(schema["symbols"])]
    if kind == "array":
        return [sample(schema["items"], named, variant + i, with_nulls) for i in range(2)]
    if kind == "map":
        return {f"k{i}": sample(schema["values"], named, variant + i, with_nulls) for i in range(2)}
    return {
        "string": f"text-{variant}-ü", "bytes": bytes([variant, 0xC3, 0x01]),
        "int": variant - 3, "long": 1_767_225_600_000 + variant,
    }[kind]


def samples(schema):
    """Records that set every field and use every enum symbol, plus one with every nullable field null."""
    parsed = fastavro.parse_schema(schema)
    named = parsed["__named_schemas"]
    widest_enum = max((len(node["symbols"]) for node in walk(parsed) if node.get("type") == "enum"), default=1)
    return [sample(parsed, named, variant) for variant in range(widest_enum)] + [sample(parsed, named, 0, True)]


@pytest.mark.parametrize(("name", "old", "new"), VERSION_PAIRS,
                         ids=[f"{name}-v{old[0]}-v{new[0]}" for name, old, new in VERSION_PAIRS])
def test_new_version_reads_old_data(name, old, new):
    (_, old_schema), (_, new_schema) = old, new
    assert check_backward_compatible(old_schema, new_schema) == []
    writer, reader = fastavro.parse_schema(old_schema), fastavro.parse_schema(new_schema)
    for record in samples(old_schema):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, writer, record)
        body = out.getvalue()
        assert fastavro.schemaless_reader(io.BytesIO(body), writer, reader) == with_defaults(new_schema, record)
        # The codec reads it into the newest version when a message carries the old fingerprint.
        assert codec_for(name).decode(MAGIC + fingerprint(old_schema) + body) == complete(name, record)


def test_samples_cover_every_field_and_symbol():
    (_, schema), *_ = schema_versions("OrderEvent")
    records = samples(schema)
    assert all(value is not None for value in records[0].values())
    assert {record["event_type"] for record in records} >= set(schema["fields"][1]["type"]["symbols"])


def broken_order_event():
    """OrderEvent's newest version with three real breaks."""
    _, schema = schema_versions("OrderEvent")[-1]
    broken = copy.deepcopy(schema)
    fields = {field["name"]: field for field in broken["fields"]}
    broken["fields"].append({"name": "priority", "type": "int", "doc": "Required, but old data lacks it."})
    fields["rating"]["type"] = ["null", "string"]
    fields["kind"]["type"][1]["symbols"].remove("REPAIR")
    return schema, broken


def test_checker_reports_real_breaks():
    schema, broken = broken_order_event()
    problems = check_backward_compatible(schema, broken)
    assert len(problems) == 3, problems
    assert any("priority" in p and "without a default" in p for p in problems)
    assert any("rating" in p and "int" in p for p in problems)
    assert any("AfterSalesKind" in p and "REPAIR" in p for p in problems)


def test_fastavro_agrees_a_field_without_default_breaks():
    schema, broken = broken_order_event()
    out = io.BytesIO()
    record = samples(schema)[-1]
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    with pytest.raises(SchemaResolutionError):
        fastavro.schemaless_reader(io.BytesIO(out.getvalue()), fastavro.parse_schema(schema),
                                   fastavro.parse_schema(broken))


def test_checker_allows_compatible_changes():
    _, schema = schema_versions("OrderEvent")[-1]
    changed = copy.deepcopy(schema)
    fields = {field["name"]: field for field in changed["fields"]}
    changed["fields"].remove(fields["comment"])  # a reader may drop a field
    fields["rating"]["type"] = ["null", "long"]  # int promotes to long
    fields["event_type"]["type"]["symbols"].remove("REVIEW_POSTED")  # the enum default catches it
    fields["line_items"]["type"][1]["items"]["fields"].append(
        {"name": "discount", "type": "string", "default": "0.00", "doc": "New, with a default."}
    )
    assert check_backward_compatible(schema, changed) == []
