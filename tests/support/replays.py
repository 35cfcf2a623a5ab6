"""Replays of event lists for the rule tests, and their outputs in a line each."""
from __future__ import annotations

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy
from orderflow.streams.stock.room import StockRoom
from support.orders import DAY, HOUR, MIN, T0, created, delivered, lines, paid, shipped, total, update


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


def shipped_in_packages() -> dict[str, dict]:
    """Orders made by the packaged rules: "two" in packages A (lines 1 and 3, delivered) and B (line 2,
    on its way), "part" with package P (line 2) and lines 1 and 3 still to ship."""
    three = lines(3)
    events = []
    for order_id in ("two", "part"):
        events += [created(order_id, T0, line_items=three, total_amount=total(three)),
                   paid(order_id, T0 + MIN, total(three))]
    events += [shipped("two", T0 + DAY, package_id="A", line_ids=["1", "3"], tracking_number="RM1"),
               shipped("two", T0 + DAY + HOUR, package_id="B", line_ids=["2"], carrier="DPD", tracking_number="DPD2"),
               update("two", T0 + 2 * DAY, package_id="A"), update("two", T0 + 2 * DAY, package_id="B"),
               delivered("two", T0 + 3 * DAY, package_id="A"),
               shipped("part", T0 + DAY, package_id="P", line_ids=["2"], carrier="Evri", tracking_number="EV7")]
    _, book = replayed(events, T0 + 3 * DAY, Policy.load())
    return book.orders


def stored_before_packages(order: dict) -> dict:
    """A shipped order as the version before packages stored it: its one parcel on the order itself."""
    old = {k: v for k, v in order.items() if k != "packages"}
    parcel = order["packages"][0]
    old.update(carrier=parcel["carrier"], tracking_number=parcel["tracking_number"])
    if "last_logistics_at" in parcel:
        old["last_logistics_at"] = parcel["last_logistics_at"]
    old["tracking"] = [{k: v for k, v in entry.items() if k != "package_id"} for entry in order["tracking"]]
    if "DELIVERY_FAILED" in old["conditions"]:
        old["conditions"] = {**old["conditions"], "DELIVERY_FAILED": {
            k: v for k, v in old["conditions"]["DELIVERY_FAILED"].items() if k != "package_id"}}
    return old
