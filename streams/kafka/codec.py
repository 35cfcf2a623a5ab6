"""The hot-path codec: Avro single-object encoding for every orderflow topic.

A message is 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form, then the Avro binary body. The
fingerprint lets a reader pick the right writer schema among all versions of a
record, so producers and consumers can upgrade one at a time.

Schemas live in the ``orderflow.schemas`` package as ``<Record>.v<N>.avsc`` and
are parsed once per record name. fastavro costs about a microsecond per field
each way, too slow for the 27-field OrderEvent, so the newest version gets a
writer and a reader generated as straight-line Python for its exact shape.
fastavro stays the reference: it resolves older writer versions into the newest,
handles any schema shape the generator does not cover, and names the field when
a record does not fit.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import json
import operator
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from orderflow.streams.kafka.topics import TopicSpec

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

_SCHEMA_FILE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc")
_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60

_BodyWriter = Callable[[bytearray, Any], None]  # appends the Avro body of a record
_BodyReader = Callable[[bytes, int], tuple[dict, int]]  # (message, body start) -> (record, end)


class SchemaError(ValueError):
    """Bytes or a record that do not fit a topic's Avro contract; the message says why."""


def fingerprint(schema: str | dict | list) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, in wire (little-endian) byte order."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@functools.cache
def _schema_texts() -> dict[str, dict[int, str]]:
    texts: dict[str, dict[int, str]] = {}
    for entry in importlib.resources.files("orderflow.schemas").iterdir():
        match = _SCHEMA_FILE.fullmatch(entry.name)
        if match:
            texts.setdefault(match["name"], {})[int(match["version"])] = entry.read_text(encoding="utf-8")
    return texts


def schema_names() -> list[str]:
    """Every record name that has at least one schema file."""
    return sorted(_schema_texts())


def schema_versions(schema_name: str) -> list[tuple[int, dict]]:
    """All versions of a record as (version, raw schema JSON), oldest first; fresh objects on each call."""
    texts = _schema_texts().get(schema_name)
    if not texts:
        raise KeyError(f"no schema files {schema_name}.v<N>.avsc in orderflow.schemas; known: {schema_names()}")
    return [(version, json.loads(texts[version])) for version in sorted(texts)]


@functools.cache
def _all_fingerprints() -> dict[bytes, str]:
    # Only used to explain an unknown fingerprint (e.g. a message on the wrong topic).
    return {
        fingerprint(raw): f"{name} v{version}"
        for name in schema_names()
        for version, raw in schema_versions(name)
    }


class Codec:
    """Encodes with the newest version of one record; decodes any of its versions into the newest."""

    def __init__(self, schema_name: str, versions: list[tuple[int, dict]]) -> None:
        self.name = schema_name
        self.version, newest = versions[-1]
        self._schema = fastavro.parse_schema(newest)
        self._header = MAGIC + fingerprint(newest)
        try:
            self._write_body, read_newest = _generate(self._schema)
        except _Unsupported:
            self._write_body, read_newest = _fastavro_body_writer(self._schema), _fastavro_body_reader(self._schema)
        self._readers: dict[bytes, _BodyReader] = {}
        for version, raw in versions:
            fp = fingerprint(raw)
            if fp in self._readers:
                raise SchemaError(f"{schema_name} v{version} has the same canonical form as an earlier version")
            if version == self.version:
                self._readers[fp] = read_newest
            else:
                self._readers[fp] = _fastavro_body_reader(fastavro.parse_schema(raw), self._schema)

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, v{self.version})"

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = bytearray(self._header)
        try:
            self._write_body(buf, record)
        except Exception as exc:
            raise SchemaError(self._explain_bad_record(record, exc)) from exc
        return bytes(buf)

    def decode(self, data: bytes) -> dict[str, Any]:
        if data.__class__ is not bytes:
            if not isinstance(data, (bytearray, memoryview)):
                raise SchemaError(f"expected bytes, got {type(data).__name__}")
            data = bytes(data)
        if data[:2] != MAGIC:
            raise SchemaError("not Avro single-object encoding (bad magic)")
        try:
            read_body = self._readers[data[2:HEADER_SIZE]]
        except KeyError:
            raise SchemaError(self._explain_unknown(data[2:HEADER_SIZE])) from None
        try:
            record, end = read_body(data, HEADER_SIZE)
        except (IndexError, EOFError):
            raise SchemaError("truncated or corrupt Avro body: the message ends inside the record") from None
        except Exception as exc:  # e.g. UnicodeDecodeError, a bad union or enum index, an absurd length
            raise SchemaError(f"truncated or corrupt Avro body: {type(exc).__name__}: {exc}") from None
        # A body that decodes but leaves bytes over was not written with this schema.
        if end != len(data):
            raise SchemaError(f"corrupt Avro body: {len(data) - end} bytes left over after the record")
        return record

    def _explain_unknown(self, fp: bytes) -> str:
        reason = f"unknown writer schema fingerprint 0x{fp.hex()} for {self.name}"
        if len(fp) < 8:
            return f"truncated header: {reason}"
        other = _all_fingerprints().get(fp)
        return f"{reason} (it is {other}: wrong topic?)" if other else reason

    def _explain_bad_record(self, record: Any, exc: Exception) -> str:
        # The fast writer's errors lack the field; fastavro's slow validator names it.
        prefix = f"record does not fit {self.name} v{self.version}"
        try:
            validate(record, self._schema, raise_errors=True)
        except ValidationError as invalid:
            expected: dict[str, list[str]] = {}
            datums: dict[str, Any] = {}
            for error in invalid.errors:
                field = error.field or self.name
                expected.setdefault(field, []).append(_type_name(error.schema))
                datums[field] = error.datum
            problems = "; ".join(
                f"field {field}: {_short_repr.repr(datums[field])} ({type(datums[field]).__name__})"
                f" is not {' | '.join(types)}"
                for field, types in expected.items()
            )
            return f"{prefix}: {problems}"
        except Exception:
            pass  # the validator choked as well; the writer's own error is all there is
        return f"{prefix}: {type(exc).__name__}: {exc}"


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return schema.get("name") or schema.get("type", "?")
    if isinstance(schema, list):
        return " | ".join(_type_name(branch) for branch in schema)
    return str(schema)


@functools.cache
def codec_for(schema_name: str) -> Codec:
    return Codec(schema_name, schema_versions(schema_name))


def codec_for_topic(spec: TopicSpec) -> Codec:
    return codec_for(spec.schema)


# --- fastavro bodies: older writer versions and schema shapes the generator does not cover ---


def _fastavro_body_writer(schema: dict) -> _BodyWriter:
    def write_body(buf: bytearray, record: Any) -> None:
        out = io.BytesIO()
        schemaless_writer(out, schema, record)
        buf += out.getbuffer()

    return write_body


def _fastavro_body_reader(writer: dict, reader: dict | None = None) -> _BodyReader:
    def read_body(data: bytes, pos: int) -> tuple[dict, int]:
        buf = io.BytesIO(data)
        buf.seek(pos)
        try:
            return schemaless_reader(buf, writer, reader), buf.tell()
        except IndexError:  # fastavro's word for a bad union or enum index; decode takes it for a short message
            raise ValueError("union or enum index out of range") from None

    return read_body


# --- generated bodies ---
#
# Helpers called by the generated code. Varints are inlined there for the common
# one-byte case; these take the longer ones.


def _read_varint(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """Zigzag varint whose first byte (>= 0x80) is already consumed."""
    z = first & 0x7F
    shift = 7
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            if z >> 64:
                raise ValueError("varint does not fit in 64 bits")
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _write_varint(buf: bytearray, z: int) -> None:
    """Unsigned (already zigzagged) varint."""
    while z >= 0x80:
        buf.append((z & 0x7F) | 0x80)
        z >>= 7
    buf.append(z)


def _bad_length(n: int, pos: int, size: int) -> ValueError:
    return ValueError(f"length {n} at byte {pos} does not fit the {size}-byte message")


def _bad_index(index: int, of: str) -> ValueError:
    return ValueError(f"index {index} is out of range for {of}")


def _bad_branch(b: int) -> ValueError:
    return ValueError(f"byte {b:#04x} is not a branch index of the union")


def _checked_int(value: Any, lo: int, hi: int) -> int:
    value = operator.index(value)  # ints (and bools) only: a float or a numeric string is a wrong type
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range [{lo}, {hi}]")
    return value


def _checked_bytes(value: Any) -> bytes:
    if not isinstance(value, (bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _checked_list(value: Any) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _checked_map(value: Any) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class _Unsupported(Exception):
    """A schema construct the generator does not cover; fastavro handles that schema instead."""


def _generate(schema: dict) -> tuple[_BodyWriter, _BodyReader]:
    """Compiles a writer and a reader for one fastavro-parsed record schema."""
    gen = _Generator(schema["__named_schemas"])
    top = gen.record_functions(schema)
    namespace: dict[str, Any] = {
        "_read_varint": _read_varint, "_write_varint": _write_varint,
        "_bad_length": _bad_length, "_bad_index": _bad_index, "_bad_branch": _bad_branch,
        "_checked_int": _checked_int, "_checked_bytes": _checked_bytes,
        "_checked_list": _checked_list, "_checked_map": _checked_map,
        **gen.constants,
    }
    exec(compile("\n".join(gen.lines), f"<avro codec for {schema['name']}>", "exec"), namespace)
    return namespace[f"_w_{top}"], namespace[f"_r_{top}"]


class _Generator:
    """Emits Python source: per named record a writer ``_w_X(buf, rec)`` and a reader ``_r_X(data, pos)``.

    Covers string, bytes, int, long, enum, record, array, map and unions of null
    with at most one other type; anything else raises _Unsupported.
    """

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._idents: dict[str, str] = {}  # record full name -> suffix of its functions
        self._count = 0

    def _new(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _constant(self, value: Any) -> str:
        name = self._new("_K")
        self.constants[name] = value
        return name

    def _kind(self, schema: Any) -> tuple[str, Any]:
        if isinstance(schema, str):
            return (schema, None) if schema not in self.named else self._kind(self.named[schema])
        if isinstance(schema, list):
            return "union", schema
        if "logicalType" in schema:
            raise _Unsupported("logical types")  # fastavro converts them to richer Python types
        return schema["type"], schema

    def record_functions(self, record: dict) -> str:
        """Emits the writer and reader of a record once; returns their name suffix."""
        if record["name"] in self._idents:
            return self._idents[record["name"]]
        ident = self._idents[record["name"]] = re.sub(r"\W", "_", record["name"]) + f"_{len(self._idents)}"
        if not record["fields"]:
            raise _Unsupported("records without fields")  # zero-size items would defeat the block-count check
        # Copying a None-filled template is far cheaper than building a dict literal of many fields,
        # and null union branches then need no store at all.
        template = self._constant(dict.fromkeys(field["name"] for field in record["fields"]))
        write = [f"def _w_{ident}(buf, rec):"]
        read = [f"def _r_{ident}(data, pos):", "    size = len(data)", f"    rec = {template}.copy()"]
        for field in record["fields"]:
            value = self._new("v")
            if "default" not in field:
                write.append(f"    {value} = rec[{field['name']!r}]")
            elif field["default"] is None:
                write.append(f"    {value} = rec.get({field['name']!r})")
            else:
                write.append(f"    {value} = rec.get({field['name']!r}, {self._constant(field['default'])})")
            write += self._write(field["type"], value, 1)
            read += self._read(field["type"], f"rec[{field['name']!r}]", 1, preset_none=True)
        read.append("    return rec, pos")
        self.lines += write + read
        return ident

    def _write_count(self, n: str, pad: str) -> list[str]:
        return [f"{pad}if {n} < 64: buf.append({n} << 1)", f"{pad}else: _write_varint(buf, {n} << 1)"]

    def _read_varint(self, target: str, pad: str) -> list[str]:
        return [
            f"{pad}b = data[pos]",
            f"{pad}pos += 1",
            f"{pad}if b < 128: {target} = (b >> 1) ^ -(b & 1)",
            f"{pad}else: {target}, pos = _read_varint(data, pos, b)",
        ]

    def _write(self, schema: Any, v: str, depth: int) -> list[str]:
        pad = "    " * depth
        kind, spec = self._kind(schema)
        if kind == "string":
            raw = self._new("s")
            return [f"{pad}{raw} = {v}.encode()", f"{pad}n = len({raw})", *self._write_count("n", pad),
                    f"{pad}buf += {raw}"]
        if kind == "bytes":
            return [f"{pad}if {v}.__class__ is not bytes: {v} = _checked_bytes({v})", f"{pad}n = len({v})",
                    *self._write_count("n", pad), f"{pad}buf += {v}"]
        if kind in _INT_RANGE:
            lo, hi = _INT_RANGE[kind]
            return [
                f"{pad}if {v}.__class__ is not int or not {lo} <= {v} <= {hi}: {v} = _checked_int({v}, {lo}, {hi})",
                f"{pad}z = ({v} << 1) ^ ({v} >> 63)",
                f"{pad}if z < 128: buf.append(z)",
                f"{pad}else: _write_varint(buf, z)",
            ]
        if kind == "enum":
            encoded = {symbol: _zigzag_bytes(i) for i, symbol in enumerate(spec["symbols"])}
            return [f"{pad}buf += {self._constant(encoded)}[{v}]"]
        if kind == "record":
            return [f"{pad}_w_{self.record_functions(spec)}(buf, {v})"]
        if kind == "array":
            item = self._new("i")
            return [
                f"{pad}if {v}.__class__ is not list: {v} = _checked_list({v})",
                f"{pad}if {v}:",
                *self._write_count(f"len({v})", pad + "    "),
                f"{pad}    for {item} in {v}:",
                *self._write(spec["items"], item, depth + 2),
                f"{pad}buf.append(0)",
            ]
        if kind == "map":
            key, value = self._new("k"), self._new("m")
            return [
                f"{pad}if {v}.__class__ is not dict: {v} = _checked_map({v})",
                f"{pad}if {v}:",
                *self._write_count(f"len({v})", pad + "    "),
                f"{pad}    for {key}, {value} in {v}.items():",
                *self._write("string", key, depth + 2),
                *self._write(spec["values"], value, depth + 2),
                f"{pad}buf.append(0)",
            ]
        if kind == "union":
            others = [i for i, branch in enumerate(spec) if branch != "null"]
            if len(others) != 1 or len(spec) > 2:
                raise _Unsupported("unions other than null and one type")  # fastavro guesses the branch by value
            (other,) = others
            if len(spec) == 1:
                return [f"{pad}buf.append(0)", *self._write(spec[0], v, depth)]
            return [
                f"{pad}if {v} is None: buf.append({2 * spec.index('null')})",
                f"{pad}else:",
                f"{pad}    buf.append({2 * other})",
                *self._write(spec[other], v, depth + 1),
            ]
        raise _Unsupported(kind)

    def _read(self, schema: Any, target: str, depth: int, preset_none: bool = False) -> list[str]:
        """Lines that read one value into target; preset_none: target already holds None."""
        pad = "    " * depth
        kind, spec = self._kind(schema)
        if kind in ("string", "bytes"):
            decode = ".decode()" if kind == "string" else ""
            return [
                *self._read_varint("n", pad),
                f"{pad}if n < 0 or n > size - pos: raise _bad_length(n, pos, size)",
                f"{pad}{target} = data[pos:pos + n]{decode}",
                f"{pad}pos += n",
            ]
        if kind in _INT_RANGE:
            return self._read_varint(target, pad)
        if kind == "enum":
            symbols, index = self._constant(tuple(spec["symbols"])), self._new("e")
            return [
                *self._read_varint(index, pad),
                f"{pad}if not 0 <= {index} < {len(spec['symbols'])}: raise _bad_index({index}, {spec['name']!r})",
                f"{pad}{target} = {symbols}[{index}]",
            ]
        if kind == "record":
            return [f"{pad}{target}, pos = _r_{self.record_functions(spec)}(data, pos)"]
        if kind in ("array", "map"):
            items, count, item = self._new("a"), self._new("c"), self._new("i")
            if kind == "array":
                start, read_item, add = "[]", self._read(spec["items"], item, depth + 2), f"{items}.append({item})"
            else:
                key = self._new("k")
                start, add = "{}", f"{items}[{key}] = {item}"
                read_item = self._read("string", key, depth + 2) + self._read(spec["values"], item, depth + 2)
            return [
                f"{pad}{items} = {start}",
                f"{pad}while True:",
                *self._read_varint(count, pad + "    "),
                f"{pad}    if {count} == 0: break",
                f"{pad}    if {count} < 0:",  # a negative count is followed by the block's size in bytes
                f"{pad}        {count} = -{count}",
                *self._read_varint("_", pad + "        "),
                # Every item takes at least a byte, so a bigger count is corrupt (and would loop for long).
                f"{pad}    if {count} > size - pos: raise _bad_length({count}, pos, size)",
                f"{pad}    for _ in range({count}):",
                *read_item,
                f"{pad}        {add}",
                f"{pad}{target} = {items}",
            ]
        if kind == "union":
            # Branch i (at most 1, see _write) is the single byte 2*i: every Avro writer emits that canonical varint.
            lines = [f"{pad}b = data[pos]", f"{pad}pos += 1"]
            for i, branch in enumerate(spec):
                lines.append(f"{pad}{'if' if i == 0 else 'elif'} b == {2 * i}:")
                if branch != "null":
                    lines += self._read(branch, target, depth + 1)
                else:
                    lines.append(f"{pad}    {'pass' if preset_none else f'{target} = None'}")
            lines.append(f"{pad}else: raise _bad_branch(b)")
            return lines
        raise _Unsupported(kind)


def _zigzag_bytes(n: int) -> bytes:
    buf = bytearray()
    _write_varint(buf, (n << 1) ^ (n >> 63))
    return bytes(buf)
