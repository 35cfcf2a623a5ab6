"""An order's lines: their ids, which are still open, and what they cost.

A line is named by the `line_id` its ORDER_CREATED gave it, or by its place
in the order ("1", "2", ...) when it has none. The warehouse's answers and the
stock requests count lines from 0 by place (confirmation.py). A seller may
cancel some lines and ship the rest; the cancelled ones are kept as
`cancelled_lines` (line id -> when, why, amount).
"""
from __future__ import annotations

from decimal import Decimal


def line_id(item: dict, place: int) -> str:
    """The id of the line at `place` (counted from 1)."""
    return item.get("line_id") or str(place)


def line_ids(order: dict) -> list[str]:
    return [line_id(item, place) for place, item in enumerate(order.get("line_items") or (), 1)]


def cancelled(order: dict) -> dict[str, dict]:
    return order.get("cancelled_lines") or {}


def open_line_ids(order: dict) -> list[str]:
    gone = cancelled(order)
    return [line for line in line_ids(order) if line not in gone]


def open_indexes(order: dict) -> list[int]:
    """Places (from 0, as stock requests count them) of the lines not cancelled."""
    gone = cancelled(order)
    return [n for n, line in enumerate(line_ids(order)) if line not in gone]


def unknown(wanted: list[str], known: list[str]) -> str | None:
    """Why lines an event names are not among the order's `known` ones, or None."""
    missing = [line for line in wanted if line not in known]
    return f"the order has no line {', '.join(missing)[:200]} (its lines: {', '.join(known)[:200]})" if missing else None


def amount(order: dict, ids) -> Decimal:
    """What the lines `ids` cost: quantity x unit price, summed."""
    chosen = set(ids)
    return sum((Decimal(item["unit_price"]) * item["quantity"]
                for line, item in zip(line_ids(order), order.get("line_items") or ()) if line in chosen), Decimal(0))


def cancel(order: dict, ids: list[str], at: int, reason: str) -> None:
    """Record the lines `ids` as cancelled on their own (the order keeps its other lines)."""
    order["cancelled_lines"] = {**cancelled(order), **{line: {"at": at, "reason": reason,
                                                               "amount": str(amount(order, [line]))} for line in ids}}


def status_of(order: dict, line: str) -> str:
    """A line's own status: CANCELLED once cancelled on its own, else its order's."""
    return "CANCELLED" if line in cancelled(order) else order["status"]
