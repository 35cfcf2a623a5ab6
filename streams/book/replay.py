"""Replay recorded events through the lifecycle core with a simulated clock.

Events are taken in file order (their arrival order). The clock is the latest
event time seen so far and never goes back; before each event, every deadline
due by the clock fires. After the last event the clock runs on to `until`.
Warehouse events go to the stock room; the orders' stock requests are
answered at once, in the order they are made.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.lifecycle import Policy
from orderflow.streams.lifecycle.contract import is_inventory
from orderflow.streams.lifecycle.order import output_id
from orderflow.streams.stock.room import StockRoom


def parse_time(text: str) -> int:
    """UTC milliseconds, or ISO 8601 (a time without an offset is taken as UTC)."""
    text = str(text).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad time {text!r}: give UTC milliseconds or ISO 8601, e.g. 2026-11-20T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


@dataclass
class Line:
    number: int
    event: dict | None
    problem: str | None = None


def read_lines(lines: Iterable[str]) -> Iterator[Line]:
    """JSON lines to events; a line that is no JSON object comes back with its problem."""
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Line(number, None, f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(event, dict):
            yield Line(number, None, f"line {number}: not a JSON object")
            continue
        yield Line(number, event)


def replay(lines: Iterable[Line], until: int, policy: Policy, book: OrderBook | None = None,
           room: StockRoom | None = None) -> Iterator[dict]:
    """Every output, in the order it takes effect. Events later than `until` are not applied."""
    book = book or OrderBook({}, policy)
    room = room if room is not None else StockRoom({})

    def answered(outputs: list[dict]) -> Iterator[dict]:
        for output in outputs:
            if output["output"] == "stock_request":
                for reply in room.handle(output):
                    yield from answered(book.answer(reply))
            else:
                yield output

    clock: int | None = None
    for line in lines:
        if line.event is None:
            book.count_failed()
            yield {"output": "dead_letter", "output_id": output_id("", f"line@{line.number}", 0),
                   "order_id": None, "at": clock,
                   "reason": line.problem, "event": None}
            continue
        event_time = line.event.get("event_time")
        if isinstance(event_time, int) and not isinstance(event_time, bool):
            if event_time > until:
                book.tally["after_until"] += 1
                continue
            clock = event_time if clock is None else max(clock, event_time)
        now = clock if clock is not None else until
        yield from answered(book.fire_due(now))
        if is_inventory(line.event):
            yield from room.apply(line.event)
        else:
            yield from answered(book.apply(line.event, now))
    yield from answered(book.fire_due(until))
