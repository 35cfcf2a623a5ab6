"""Confirmation, the order's side: its units asked of the warehouse, and the warehouse's answer.

A paid order reserves the units of each line; a cancelled one releases them; a
shipped one consumes them; a forgotten one deletes the lines' holds
(`stock_requests`, from one step of the order). The
inventory answers only with problems (`OUT_OF_STOCK`, `PRICE_MISMATCH`, see
streams/stock/room.py); `stock_problem` raises the alert once per line and
problem and, while the order waits to ship, opens the condition that asks the
seller to act (contact the buyer, or cancel). Shipping or cancelling closes it,
and so does cancelling the lines it concerns. A line cancelled on its own
releases its hold; shipping consumes, and cancelling releases, the others.

The answer comes back after the order may have moved on; the alert does not
depend on that, and the condition ends the same either way (opened then
closed, or never opened), so a live worker ends where a replay does.
"""
from __future__ import annotations

from . import lines, shipping
from . import status as st
from .order import Change, output_id

RESERVE, RELEASE, CONSUME, FORGET = "RESERVE", "RELEASE", "CONSUME", "FORGET"
OUT_OF_STOCK, PRICE_MISMATCH = st.OUT_OF_STOCK, st.PRICE_MISMATCH
PROBLEMS = (OUT_OF_STOCK, PRICE_MISMATCH)
RAISED = "stock_problems"  # the order's record of alerts already raised, as PROBLEM@line


def stock_requests(before: dict | None, after: dict | None) -> list[dict]:
    """What one step of an order asks of the warehouse: `stock_request` outputs, one per line item."""
    if before is not None and before.get("paid_at") is not None and (after is None or after["status"] is None):
        # Forgotten after its retention (an event for the same id may be held already): the lines' closed
        # holds go too. Not sooner: a request read again after a crash finds its hold closed, unchanged.
        return _requests(before, [(FORGET, before["deadlines"][FORGET], None)])  # the deadline of that name fired
    if after is None or after.get("status") is None:
        return []
    was = before or {}
    actions = []
    if after.get("paid_at") is not None and was.get("paid_at") is None:
        actions.append((RESERVE, after["paid_at"], None))
    ids = lines.line_ids(after)
    cancelled = lines.cancelled(after)
    if after.get("paid_at") is not None and cancelled is not lines.cancelled(was):
        # Lines the seller cancelled on their own release their holds (each line once), before the rest
        # ships: events held for a late creation may pay, cancel lines and ship in one step. Lines of a
        # package given up were consumed when it shipped: nothing is left to release.
        shipped = shipping.shipped_line_ids(after)
        for line in [line for line in cancelled if line not in lines.cancelled(was) and line not in shipped]:
            actions.append((RELEASE, cancelled[line]["at"], [ids.index(line)]))
    # Each package consumes its own lines' holds; a cancel releases the holds of the open lines not
    # shipped (a cancelled line's hold is closed already).
    shipped_before = {package["package_id"] for package in shipping.packages(was)}
    for package in shipping.packages(after):
        if package["package_id"] not in shipped_before:
            actions.append((CONSUME, package["shipped_at"], [ids.index(line) for line in package["line_ids"]]))
    if (after["status"] == st.CANCELLED and was.get("status") != st.CANCELLED
            and after.get("paid_at") is not None):
        left = set(shipping.unshipped_line_ids(after))
        actions.append((RELEASE, after["cancelled_at"], [n for n, line in enumerate(ids) if line in left]))
    return _requests(after, actions)


def _requests(order: dict, actions: list[tuple[str, int, list[int] | None]]) -> list[dict]:
    """Each action for the lines at the places given (None: every line)."""
    order_id = order["order_id"]
    items = order.get("line_items") or ()
    return [{"output": "stock_request", "output_id": output_id(order_id, f"{action}@{n}", 0),
             "action": action, "order_id": order_id, "line": n, "sku_id": items[n]["sku_id"],
             "quantity": items[n]["quantity"], "unit_price": items[n]["unit_price"], "currency": order.get("currency"),
             "ordered_at": order["created_at"], "at": at}
            for action, at, places in actions for n in (range(len(items)) if places is None else places)]


def stock_problem(change: Change, reply: dict, detailed: bool = True) -> None:
    """The warehouse could not fully reserve a line, or its price is not the catalogue's. Not
    `detailed`: the order's condition names the line only (an order at its size limit)."""
    problem, line = reply["problem"], reply["line"]
    mark = f"{problem}@{line}"
    raised = change.order.get(RAISED, [])
    if mark in raised:
        return  # a repeated answer
    change.order[RAISED] = [*raised, mark]
    if problem == OUT_OF_STOCK:
        detail = {"sku_id": reply["sku_id"], "line": line, "quantity": reply["quantity"],
                  "available": reply["available"]}
    else:
        detail = {"sku_id": reply["sku_id"], "line": line, "unit_price": reply["unit_price"],
                  "catalogue_price": reply["catalogue_price"], "currency": reply["currency"]}
    change.notify("alert", problem, **detail)
    if change.status in (st.ON_HOLD, st.AWAITING_SHIPMENT) and line in lines.open_indexes(change.order):
        flagged = change.order["conditions"].get(problem, {}).get("lines", {})
        kept = {k: v for k, v in detail.items() if k != "line"} if detailed else {}
        change.open_condition(problem, lines={**flagged, str(line): kept})
