"""Replays of event lists for the rule tests, and their outputs in a line each."""
from __future__ import annotations

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy
from orderflow.streams.stock.room import StockRoom
from support.orders import T0


def replayed(events: list[dict], until: int, policy: Policy, room: StockRoom | None = None):
    """The outputs of a replay of `events` up to `until`, and the order book it leaves."""
    book = OrderBook({}, policy)
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), until, policy, book, room))
    return outputs, book


def summary(outputs: list[dict]) -> list[tuple[int, str]]:
    """(at offset from T0, what) for each output: status changes as FROM>TO:REASON, notices by kind."""
    rows = []
    for o in outputs:
        if o["output"] == "status_change":
            rows.append((o["at"] - T0, f"{o['from_status']}>{o['to_status']}:{o['reason']}"))
        elif o["output"] == "dead_letter":
            rows.append((o["at"] - T0, f"dead_letter:{o['reason']}"))
        elif o["output"] == "case_update":
            rows.append((o["at"] - T0, f"case {o['case_id']} {o['from_state']}>{o['to_state']}:{o['reason']}"))
        else:
            rows.append((o["at"] - T0, f"{o['output']}:{o['kind']}"))
    return rows
