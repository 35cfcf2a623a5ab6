"""Is a new schema version backward compatible: can a reader on it read data written with the old one?

The rules are Avro's schema resolution with writer = old and reader = new.
fastavro only finds a break when it meets data that exercises it (a null field
hides a changed type); this finds it from the two schemas alone.
"""
from __future__ import annotations

from typing import Any

import fastavro

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "enum", "fixed"}
# Writer type -> reader types that can read it (Avro "promotion").
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


def check_backward_compatible(old_schema: Any, new_schema: Any) -> list[str]:
    """Problems that stop the new record schema from reading data written with the old one; empty when none."""
    old, new = fastavro.parse_schema(old_schema), fastavro.parse_schema(new_schema)
    checker = _Checker(old["__named_schemas"], new["__named_schemas"])
    checker.check(old, new, _short(old["name"]))
    return checker.problems


def _kind(schema: Any, named: dict[str, Any]) -> tuple[str, Any]:
    """(type name, definition) with named references looked up; {} is the definition of a primitive."""
    if isinstance(schema, str):
        return (schema, {}) if schema in _PRIMITIVES else _kind(named[schema], named)
    if isinstance(schema, list):
        return "union", schema
    return schema["type"], schema


def _short(full_name: str) -> str:
    return full_name.rpartition(".")[2]


def _describe(kind: str, spec: Any) -> str:
    return f"{kind} {_short(spec['name'])}" if kind in _NAMED else kind


class _Checker:
    def __init__(self, old_named: dict[str, Any], new_named: dict[str, Any]) -> None:
        self.old_named, self.new_named = old_named, new_named
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()  # record pairs already checked (recursive types)

    def _resolves(self, w_kind: str, w: Any, r_kind: str, r: Any) -> bool:
        """Whether the reader type is a candidate for the writer type (Avro's union branch matching)."""
        if w_kind != r_kind:
            return r_kind in _PROMOTIONS.get(w_kind, ())
        if w_kind not in _NAMED:
            return True
        return _short(w["name"]) in {_short(name) for name in [r["name"], *r.get("aliases", ())]}

    def check(self, writer: Any, reader: Any, path: str) -> None:
        w_kind, w = _kind(writer, self.old_named)
        r_kind, r = _kind(reader, self.new_named)
        if w_kind == "union":
            # Data may hold any of the old branches: the new schema must read every one of them.
            for branch in w:
                self.check(branch, reader, f"{path}<{_describe(*_kind(branch, self.old_named))}>")
            return
        if r_kind == "union":
            branches = [_kind(branch, self.new_named) for branch in r]
            # Avro picks an exact match first, then a promotion.
            matches = [i for i, (kind, spec) in enumerate(branches) if self._resolves(w_kind, w, kind, spec)]
            exact = [i for i in matches if branches[i][0] == w_kind]
            if not matches:
                self.problems.append(
                    f"{path}: old {_describe(w_kind, w)} is not among the new union's types "
                    f"({', '.join(_describe(*branch) for branch in branches)})"
                )
                return
            self.check(writer, r[(exact or matches)[0]], path)
            return
        if not self._resolves(w_kind, w, r_kind, r):
            self.problems.append(f"{path}: type changed from {_describe(w_kind, w)} to {_describe(r_kind, r)}")
            return
        if w_kind == "record":
            self._check_record(w, r, path)
        elif w_kind == "enum":
            lost = [symbol for symbol in w["symbols"] if symbol not in r["symbols"]]
            if lost and "default" not in r:
                self.problems.append(f"{path}: enum {_short(r['name'])} lost symbols {lost} and has no default")
        elif w_kind == "fixed" and w["size"] != r["size"]:
            self.problems.append(f"{path}: fixed {_short(r['name'])} size changed from {w['size']} to {r['size']}")
        elif w_kind == "array":
            self.check(w["items"], r["items"], f"{path}[]")
        elif w_kind == "map":
            self.check(w["values"], r["values"], f"{path}{{}}")

    def _check_record(self, w: dict, r: dict, path: str) -> None:
        if (w["name"], r["name"]) in self._seen:
            return
        self._seen.add((w["name"], r["name"]))
        old_fields = {field["name"]: field for field in w["fields"]}
        for field in r["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            old = next((old_fields[name] for name in names if name in old_fields), None)
            if old is not None:
                self.check(old["type"], field["type"], f"{path}.{field['name']}")
            elif "default" not in field:
                self.problems.append(f"{path}.{field['name']}: new field without a default (old data lacks it)")
