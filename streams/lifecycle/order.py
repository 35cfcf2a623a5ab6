"""The order as plain data, and `Change`: one step's edits to it.

An order is a JSON-ready dict, so the same value lives in a RocksDB table, a
replay's memory and a test. A step never mutates the dict it was given:
`Change` copies the order's top level, and each container (history,
deadlines, ...) only when the step first edits it, so a step costs what it
changes rather than the order's whole history. It records the outputs the
step produces, each with an id derived from its cause, so a repeated step
repeats its ids.
"""
from __future__ import annotations

import hashlib

import orjson

from . import status as st
from .policy import RegionRules

# Containers that a step may change; everything inside them is replaced, never edited.
# `seen`: ids of the events applied (or held); `rejected`: ids of the latest rejected ones.
_CONTAINERS = ("conditions", "deadlines", "history", "tracking", "reviews", "after_sales", "seen", "early",
               "rejected", "packages")


def new_order(order_id: str) -> dict:
    """An order known only by id: events for it arrived before its creation."""
    return {"order_id": order_id, "status": None, "conditions": {}, "deadlines": {}, "history": [],
            "tracking": [], "reviews": [], "after_sales": [], "seen": [], "early": [], "rejected": [], "packages": []}


def copy_order(order: dict) -> dict:
    new = dict(order)
    for name in _CONTAINERS:
        value = new.get(name, [])  # `rejected` is absent from orders stored before it came in
        new[name] = dict(value) if isinstance(value, dict) else list(value)
    return new


def encoded_size(order: dict) -> int:
    """Bytes of the order as the tables store it (compact JSON, see tables/json_table.py)."""
    return len(orjson.dumps(order))


def deadline_for(kind: str, owner: str) -> str:
    """The name of a deadline of one package or after-sales case of an order: KIND:owner."""
    return f"{kind}:{owner}"


def deadline_kind(name: str) -> str:
    return name.split(":", 1)[0]


def deadline_owner(name: str) -> str | None:
    """The package or case a deadline named KIND:owner is for; None for the order's own deadlines."""
    return name.split(":", 1)[1] if ":" in name else None


def index_of(items: list[dict], field: str, value: str) -> int | None:
    """The place of the first item whose `field` is `value` (a package or case by its id)."""
    return next((n for n, item in enumerate(items) if item[field] == value), None)


def output_id(order_id: str, cause: str, n: int) -> str:
    return hashlib.blake2b(f"{order_id}\x1f{cause}\x1f{n}".encode(), digest_size=16).hexdigest()


class Rejected(Exception):
    """The event is not allowed for the order as it stands; the message says why."""


class Change:
    """Edits to one order caused by one event or one deadline, taking effect at `at`."""

    def __init__(self, order: dict, cause: str, at: int, rules: RegionRules | None, event_id: str | None = None):
        self.order = dict(order)
        self._edited: set[str] = set()  # the containers copied for this step
        self.cause = cause
        self.at = at
        self.rules = rules
        self.event_id = event_id
        self.outputs: list[dict] = []

    def edit(self, name: str) -> dict | list:
        """The order's container `name`, to change: the step's own copy, made on its first edit."""
        if name not in self._edited:
            self._edited.add(name)
            self.order[name] = self.order.get(name, []).copy()
        return self.order[name]

    @property
    def status(self) -> str | None:
        return self.order["status"]

    def require(self, allowed: bool, why: str, *args) -> None:
        """Reject the event unless `allowed`; `why` is formatted with `args` only then."""
        if not allowed:
            raise Rejected(why.format(*args) if args else why)

    def forbid(self, problem: str | None) -> None:
        """Reject the event with `problem`, when there is one."""
        if problem:
            raise Rejected(problem)

    def require_status(self, event_type: str, *statuses: str) -> None:
        self.require(self.status in statuses, "{} is not allowed in status {} (only in {})",
                     event_type, self.status, ", ".join(statuses))

    def _emit(self, output: str, **fields) -> None:
        oid = self.order["order_id"]
        self.outputs.append({"output": output, "output_id": output_id(oid, self.cause, len(self.outputs)),
                             "order_id": oid, "at": self.at, **fields})

    def emit(self, output: str, **fields) -> None:
        """An output of another kind (an after-sales case's update), with the order's region and shop."""
        self._emit(output, region=self.order.get("region"), shop_id=self.order.get("shop_id"),
                   event_id=self.event_id, **fields)

    def move(self, to: str, reason: str, initiator: str | None = None, cancel_reason: str | None = None) -> None:
        """Change status and publish it; a terminal status ends every pending deadline (but an after-sales
        case's). A cancel by the seller or an operator names its `cancel_reason` from the region's catalogue."""
        order = self.order
        from_status = order["status"]
        order["status"] = to
        if order.get(st.REACHED_AT[to]) is None:  # an order on hold keeps its payment time
            order[st.REACHED_AT[to]] = self.at
        self.edit("history").append({"at": self.at, "from_status": from_status, "to_status": to, "reason": reason})
        extra = {"initiator": initiator} if initiator else {}
        if cancel_reason:
            extra["cancel_reason"] = order["cancel_detail"] = cancel_reason
        if to == st.CANCELLED:
            order["cancel_reason"], order["cancel_initiator"] = reason, initiator
            order["conditions"] = {}
        if to in st.TERMINAL:
            order["deadlines"] = {name: due for name, due in order["deadlines"].items()
                                  if deadline_kind(name) in st.CASE_DEADLINES}
        self._emit("status_change", from_status=from_status, to_status=to, reason=reason,
                   region=order.get("region"), shop_id=order.get("shop_id"), event_id=self.event_id, **extra)

    def notify(self, output: str, kind: str, **detail) -> None:
        """A reminder (to the buyer) or an alert (someone must act)."""
        self._emit(output, kind=kind, region=self.order.get("region"), shop_id=self.order.get("shop_id"),
                   detail={k: str(v) for k, v in detail.items() if v is not None})

    def reject(self, reason: str, event: dict) -> None:
        self._emit("dead_letter", reason=reason, event=event)

    def schedule(self, deadline: str, due: int) -> None:
        self.edit("deadlines")[deadline] = due

    def cancel_deadlines(self, *deadlines: str) -> None:
        self._drop("deadlines", deadlines)

    def open_condition(self, name: str, **detail) -> None:
        self.edit("conditions")[name] = detail

    def close_condition(self, *names: str) -> None:
        self._drop("conditions", names)

    def _drop(self, container: str, names: tuple[str, ...]) -> None:
        for name in names:
            if name in self.order[container]:
                del self.edit(container)[name]
