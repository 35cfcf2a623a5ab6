"""Property-based tests of the lifecycle core, through the replay, over random event sequences.

Each example is a delivery: the events of 1 to 4 orders, as a random walk per order
over the 19 event types of the contract (mostly the step a real order would take
next, sometimes any type at all, so some events are invalid for the status), with
gaps of 1 minute to 10 days between an order's events (so payment reminders,
timeouts, ship-by, redelivery and auto-confirm deadlines fire in between), merged
by event time and then disturbed: some events arrive late, some orders' events
arrive before their ORDER_CREATED, some orders are never created.

Every event keeps the contract (`contract.problem(event) is None`): these tests are
about the lifecycle rules, not about validation.

Properties (each test's docstring states it exactly):
1. nothing leaves CANCELLED or COMPLETED;  2. at most one terminal status change per order;
3. a replay is deterministic;  4. repeated delivery of applied events changes nothing;
5. reordering within a window shorter than any deadline: (a) events arriving before their
   ORDER_CREATED are applied as if in order, (b) when every event takes its normal effect
   either way, the same status, history path and tracking;
6. the counts reconcile and every dead letter says why and carries its event;
7. output ids are unique and every output is at the time of its cause (an event of its
   order, or a deadline the order had).
Three fixed examples pin down cases the generators do not reach well: a repeated rejected
event, a deadline re-armed at the same due time, and an older carrier scan arriving late.

On failure hypothesis prints the delivery as one line per event:
`order  +DdHH:MM:SS.mmm-from-T0  EVENT_TYPE(fields)  [event_id]`, in arrival order,
and notes the outputs of the failing replay.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from unittest.mock import patch

from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import contract
from orderflow.streams.lifecycle import lines as order_lines
from orderflow.streams.lifecycle import status as statuses
from orderflow.streams.lifecycle.engine import ORPHAN_GRACE
from orderflow.streams.lifecycle.order import Change, output_id
from support import orders as build
from support.orders import DAY, HOUR, MIN, T0

# The packaged policy with the UK's one-hour remorse hold turned on: GB orders go ON_HOLD when paid.
POLICY = build.policy_with(GB='remorse_period = "1h"')
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ALL_TYPES = tuple(contract.ESSENTIAL)  # the 19 event types of the contract
CASES = st.sampled_from(("c1", "c2"))  # after-sales case ids: events name one of two
# Package ids: shipping events name none (the only package), or the first two default ids, or "P".
PACKAGE = st.none() | st.sampled_from(("1", "2", "P"))
SOME_LINES = st.lists(st.sampled_from(("1", "2", "3")), min_size=1, max_size=2, unique=True)
REGIONS = ("GB", "SG", "VN")
ON_THE_WAY = (statuses.AWAITING_COLLECTION, statuses.IN_TRANSIT)
RECEIVED = (statuses.DELIVERED, statuses.COMPLETED)


# --- Building events ------------------------------------------------------------------------------

@st.composite
def make_event(draw, kind: str, order_id: str, at: int, event_id: str) -> dict:
    """One event of type `kind` with valid, randomly chosen essential fields."""
    if kind == "ORDER_CREATED":
        lines = build.lines(draw(st.integers(1, 3)))
        made = build.created(order_id, at, region=draw(st.sampled_from(REGIONS)), line_items=lines,
                             total_amount=build.total(lines))
    elif kind == "ORDER_PAID":
        made = build.paid(order_id, at)
    elif kind == "BUYER_CANCEL_REQUESTED":
        made = build.cancel_request(order_id, at)
    elif kind == "SELLER_CANCEL_RESPONSE":
        made = build.cancel_response(order_id, at, draw(st.sampled_from(("REJECT", "ACCEPT"))))
    elif kind == "SELLER_CANCELLED":
        line_ids = draw(st.none() | st.lists(st.sampled_from(("1", "2", "3")), min_size=1, max_size=3, unique=True))
        made = build.seller_cancelled(order_id, at, line_ids=line_ids)
    elif kind == "OPERATOR_CANCELLED":
        made = build.operator_cancelled(order_id, at, draw(st.sampled_from(("FRAUD", "POLICY_VIOLATION"))))
    elif kind == "PACKAGE_SHIPPED":  # every line left to ship, or a package of some
        made = build.shipped(order_id, at, **_given(package_id=draw(PACKAGE), line_ids=draw(st.none() | SOME_LINES)))
    elif kind == "LOGISTICS_UPDATE":
        made = build.update(order_id, at, draw(st.sampled_from(contract.CHOICES["status"])),
                            **_given(package_id=draw(PACKAGE)))
    elif kind == "DELIVERY_FAILED":
        made = build.failed(order_id, at, **_given(package_id=draw(PACKAGE)))
    elif kind == "REDELIVERY_REQUESTED":
        made = build.redelivery(order_id, at, **_given(package_id=draw(PACKAGE)))
    elif kind == "DELIVERED":
        made = build.delivered(order_id, at, **_given(package_id=draw(PACKAGE)))
    elif kind == "BUYER_CONFIRMED_RECEIPT":
        made = build.confirmed(order_id, at)
    elif kind == "REVIEW_POSTED":
        made = build.review(order_id, at, draw(st.integers(1, 5)))
    elif kind == "AFTER_SALES_REQUESTED":
        lines = draw(st.none() | st.lists(st.sampled_from(("1", "2", "3")), min_size=1, max_size=2, unique=True))
        made = build.after_sales(order_id, at, draw(st.sampled_from(contract.CHOICES["kind"])), case_id=draw(CASES),
                                 **({"line_ids": lines} if lines else {}))
    elif kind == "AFTER_SALES_RESOLVED":
        made = build.after_sales_resolved(order_id, at, draw(st.sampled_from(contract.CHOICES["outcome"])),
                                          **({"case_id": case} if (case := draw(st.none() | CASES)) else {}))
    elif kind == "AFTER_SALES_RESPONSE":
        made = build.case_response(order_id, at, draw(CASES), draw(st.sampled_from(("ACCEPT", "REJECT"))))
    elif kind == "RETURN_SHIPPED":
        made = build.return_shipped(order_id, at, draw(CASES))
    elif kind == "RETURN_RECEIVED":
        made = build.return_received(order_id, at, draw(CASES))
    elif kind == "REFUND_ISSUED":
        made = build.refund_issued(order_id, at, draw(CASES), draw(st.sampled_from(("5.00", "10.00", "50.00", "140.00"))))
    else:  # pragma: no cover - ALL_TYPES is the contract's list
        raise AssertionError(kind)
    made["event_id"] = event_id  # deterministic ids (the builders' global counter is not)
    assert contract.problem(made) is None, (made, contract.problem(made))
    return made


def _given(**fields) -> dict:
    """The optional fields drawn, those not left out."""
    return {name: value for name, value in fields.items() if value is not None}


class Sim:
    """A rough model of where an order stands, used only to pick a plausible next event.

    It ignores deadlines and is never used to predict the core's outputs.
    """

    def __init__(self) -> None:
        self.status: str | None = None
        self.request = False  # buyer cancellation request pending
        self.failed: str | None = None  # None, "awaiting" (a redelivery request) or "requested"
        self.case = False  # after-sales case open
        self.reviewed = False
        self.since = 0  # time of the last event that moved the model
        self.lines = 0  # how many lines the order has
        self.shipped: set[str] = set()  # lines handed over in packages


    def tick(self, at: int) -> None:
        """Roughly what the default policy's deadlines would have done by `at`."""
        rules, since = POLICY.default, at - self.since
        if self.status == statuses.UNPAID and since >= rules.unpaid_timeout:
            self.status = statuses.CANCELLED
        elif self.request and since >= rules.cancel_request_timeout:
            self.status, self.request = statuses.CANCELLED, False
        elif self.failed == "awaiting" and since >= rules.redelivery_window:
            self.status, self.failed = statuses.CANCELLED, None
        elif self.status == statuses.DELIVERED and since >= rules.auto_confirm:
            self.status = statuses.COMPLETED

    def natural(self) -> list[str]:
        """Next event types a real order could see (repeats weight the choice)."""
        s = self.status
        if s is None:
            return ["ORDER_CREATED"]
        if s == statuses.UNPAID:
            return ["ORDER_PAID"] * 5 + ["SELLER_CANCELLED"]
        if s == statuses.AWAITING_SHIPMENT:
            if self.request:
                return ["SELLER_CANCEL_RESPONSE"]
            return ["PACKAGE_SHIPPED"] * 3 + ["BUYER_CANCEL_REQUESTED", "SELLER_CANCELLED", "OPERATOR_CANCELLED"]
        if s == statuses.PARTIALLY_SHIPPING:
            return ["PACKAGE_SHIPPED"] * 3 + ["LOGISTICS_UPDATE", "DELIVERED", "DELIVERY_FAILED", "SELLER_CANCELLED"]
        if s in ON_THE_WAY:
            return (["LOGISTICS_UPDATE"] * 2 + ["DELIVERED"]
                    + (["REDELIVERY_REQUESTED"] if self.failed == "awaiting" else ["DELIVERY_FAILED"]))
        if s in RECEIVED:
            kinds = ["BUYER_CONFIRMED_RECEIPT"] * 2 if s == statuses.DELIVERED else []
            kinds += [] if self.reviewed else ["REVIEW_POSTED"]
            return kinds + (["AFTER_SALES_RESPONSE", "RETURN_SHIPPED", "RETURN_RECEIVED", "REFUND_ISSUED",
                             "AFTER_SALES_RESOLVED"] if self.case else ["AFTER_SALES_REQUESTED"])
        return ["ORDER_PAID", "REVIEW_POSTED"]  # CANCELLED: a late payment, or a confused client

    def saw(self, e: dict) -> None:
        before = (self.status, self.request, self.failed)
        self._saw(e)
        if (self.status, self.request, self.failed) != before:
            self.since = e["event_time"]

    def _saw(self, e: dict) -> None:
        kind, s = e["event_type"], self.status
        if kind == "ORDER_CREATED" and s is None:
            self.status, self.lines = statuses.UNPAID, len(e["line_items"])
        elif kind == "ORDER_PAID" and s == statuses.UNPAID:
            self.status = statuses.AWAITING_SHIPMENT
        elif kind == "SELLER_CANCELLED" and s in (statuses.UNPAID, statuses.AWAITING_SHIPMENT) and "line_ids" not in e:
            self.status = statuses.CANCELLED
        elif kind == "OPERATOR_CANCELLED" and s in (statuses.UNPAID, statuses.AWAITING_SHIPMENT, *ON_THE_WAY):
            self.status = statuses.CANCELLED
        elif kind == "BUYER_CANCEL_REQUESTED" and s == statuses.AWAITING_SHIPMENT:
            self.request = True
        elif kind == "SELLER_CANCEL_RESPONSE" and self.request:
            self.request = False
            if e["decision"] == "ACCEPT":
                self.status = statuses.CANCELLED
        elif kind == "PACKAGE_SHIPPED" and s in (statuses.AWAITING_SHIPMENT, statuses.PARTIALLY_SHIPPING) \
                and not self.request:
            self.shipped |= set(e.get("line_ids") or (str(n) for n in range(1, self.lines + 1)))
            everything = self.shipped >= {str(n) for n in range(1, self.lines + 1)}
            self.status = statuses.AWAITING_COLLECTION if everything else statuses.PARTIALLY_SHIPPING
        elif kind == "LOGISTICS_UPDATE" and s in ON_THE_WAY:
            self.status = statuses.IN_TRANSIT
            if self.failed == "requested":
                self.failed = None
        elif kind == "DELIVERY_FAILED" and s in ON_THE_WAY and self.failed != "awaiting":
            self.failed = "awaiting"
        elif kind == "REDELIVERY_REQUESTED" and self.failed == "awaiting":
            self.failed = "requested"
        elif kind == "DELIVERED" and s in ON_THE_WAY:
            self.status, self.failed = statuses.DELIVERED, None
        elif kind == "BUYER_CONFIRMED_RECEIPT" and s == statuses.DELIVERED:
            self.status = statuses.COMPLETED
        elif kind == "REVIEW_POSTED" and s in RECEIVED:
            self.reviewed = True
        elif kind == "AFTER_SALES_REQUESTED" and s in RECEIVED:
            self.case = True
        elif kind in ("AFTER_SALES_RESOLVED", "REFUND_ISSUED"):
            self.case = False


@st.composite
def long_gap(draw) -> int:
    """1 minute to 10 days, mostly short so that orders get somewhere before their deadlines."""
    scale = draw(st.integers(0, 6))
    if scale <= 3:
        return draw(st.integers(MIN, HOUR))
    if scale <= 5:
        return draw(st.integers(HOUR, 2 * DAY))
    return draw(st.integers(2 * DAY, 10 * DAY))


@st.composite
def order_walk(draw, order_id: str, start: int, gap=long_gap(), max_events: int = 10,
               off_script: int = 2, created_first: bool = False, repeat_created: bool = True,
               after_cancel: bool = True) -> list[dict]:
    """An order's events in event-time order (strictly increasing times).

    Each step is, with odds (10 - off_script) in 10, what the order would naturally see next
    (per `Sim`), else any of the 19 event types. Once the model thinks the order is cancelled,
    the walk stops (half the time, or always without `after_cancel`).
    """
    sim, at, walk = Sim(), start, []
    for n in range(draw(st.integers(1, max_events))):
        if n:
            at += draw(gap)
            sim.tick(at)
            if sim.status == statuses.CANCELLED and (not after_cancel or draw(st.booleans())):
                break  # most cancelled orders hear nothing more
        if n == 0 and created_first:
            kind = "ORDER_CREATED"
        elif draw(st.integers(0, 9)) >= off_script:
            kind = draw(st.sampled_from(sim.natural()))
        else:
            kinds = ALL_TYPES if repeat_created else tuple(k for k in ALL_TYPES if k != "ORDER_CREATED")
            kind = draw(st.sampled_from(kinds))
        made = draw(make_event(kind, order_id, at, f"{order_id}-e{n}"))
        sim.saw(made)
        walk.append(made)
    return walk


# --- Deliveries -----------------------------------------------------------------------------------

def _offset(ms: int) -> str:
    sign, ms = ("-" if ms < 0 else "+"), abs(ms)
    days, ms = divmod(ms, DAY)
    hours, ms = divmod(ms, HOUR)
    minutes, ms = divmod(ms, MIN)
    return f"{sign}{days}d{hours:02d}:{minutes:02d}:{ms / 1000:06.3f}"


_SHOWN = ("region", "decision", "status", "rating", "kind", "outcome")
_OPTIONAL = ("package_id", "line_ids", "case_id")


def describe(e: dict) -> str:
    fields = ",".join([str(e[k]) for k in _SHOWN if k in contract.ESSENTIAL[e["event_type"]] or
                       (k == "region" and e["event_type"] == "ORDER_CREATED")]
                      + [f"{k}={e[k]}" for k in _OPTIONAL if e.get(k) is not None])
    return f"{e['order_id']}  {_offset(e['event_time'] - T0)}  {e['event_type']}({fields})  [{e['event_id']}]"


@dataclass
class Delivery:
    """Events in arrival order; its repr is one readable line per event."""
    events: list[dict]

    def __repr__(self) -> str:
        return "Delivery([\n" + "".join(f"    {describe(e)}\n" for e in self.events) + "])"


def _move_later(arrival: list, moves) -> list:
    arrival = list(arrival)
    for index, shift in moves:
        if arrival:
            index %= len(arrival)
            arrival.insert(min(index + shift, len(arrival) - 1), arrival.pop(index))
    return arrival


@st.composite
def deliveries(draw) -> Delivery:
    """1-4 orders' random walks, merged by event time, then disturbed:

    - some events arrive late (moved 1-8 places later),
    - some orders' ORDER_CREATED arrives after later events of the order (which are held),
    - an order's walk may start with something other than ORDER_CREATED (never created,
      or created later).
    """
    walks = []
    for n in range(draw(st.integers(1, 4))):
        start = T0 + draw(st.integers(0, DAY))
        walks.append(draw(order_walk(f"o{n + 1}", start)))
    arrival = sorted((e for walk in walks for e in walk), key=lambda e: e["event_time"])
    # A late ORDER_CREATED: its order's next events arrive first.
    for walk in walks:
        if walk[0]["event_type"] == "ORDER_CREATED" and draw(st.integers(0, 3)) == 0:
            index = arrival.index(walk[0])
            arrival = _move_later(arrival, [(index, draw(st.integers(1, 4)))])
    # Any event arriving late.
    moves = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 8)), max_size=3))
    return Delivery(_move_later(arrival, moves))


@st.composite
def redelivered(draw, delivery: Delivery, max_copies: int = 3):
    """Per event, 0 to `max_copies` copies, each inserted at a random later position.

    Returns the copies as (index of the original, slot) with slot > index: the copy
    arrives just before the original event at `slot` (or at the end).
    """
    n = len(delivery.events)
    copies = []
    for index in range(n):
        repeated = draw(st.booleans())
        for _ in range(draw(st.integers(1, max_copies)) if repeated else 0):
            copies.append((index, draw(st.integers(index + 1, n))))
    return copies


def with_copies(events: list[dict], copies) -> list[dict]:
    slots: dict[int, list[dict]] = {}
    for index, slot in copies:
        slots.setdefault(slot, []).append(copy.deepcopy(events[index]))  # a re-decoded message
    out = []
    for slot in range(len(events) + 1):
        out += slots.get(slot, [])
        if slot < len(events):
            out.append(events[slot])
    return out


# --- Running --------------------------------------------------------------------------------------

def until_for(events: list[dict]) -> int:
    """Late enough for every deadline (48 h, 72 h, 7 d + 2 business days, 7 d auto-confirm) to fire."""
    return max(e["event_time"] for e in events) + 30 * DAY


def run(events: list[dict], until: int | None = None, orders: dict | None = None, room=None):
    until = until_for(events) if until is None else until
    book = OrderBook({} if orders is None else orders, POLICY)
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), until, POLICY, book, room))
    return outputs, book


def summary(outputs: list[dict]) -> list[str]:
    rows = []
    for o in outputs:
        at = _offset(o["at"] - T0) if isinstance(o["at"], int) else o["at"]
        if o["output"] == "status_change":
            what = f"{o['from_status']}>{o['to_status']}:{o['reason']}"
        elif o["output"] == "dead_letter":
            what = f"dead_letter[{(o['event'] or {}).get('event_id')}]:{o['reason']}"
        elif o["output"] == "case_update":
            what = f"case {o['case_id']} {o['from_state']}>{o['to_state']}:{o['reason']}"
        else:
            what = f"{o['output']}:{o['kind']}"
        rows.append(f"{o['order_id']}  {at}  {what}  #{o['output_id'][:8]}")
    return rows


def show(label: str, outputs: list[dict]) -> None:
    note(f"{label}:\n    " + "\n    ".join(summary(outputs)))


def status_changes(outputs: list[dict]) -> list[dict]:
    return [o for o in outputs if o["output"] == "status_change"]


def per_order(outputs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for o in outputs:
        grouped.setdefault(o["order_id"], []).append(o)
    return grouped


# --- 1, 2: terminal statuses ----------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(deliveries(), st.data())
def test_nothing_leaves_cancelled_or_completed(delivery, data):
    """In the replay's outputs (with random duplicate deliveries mixed in), once an order has
    a status change to CANCELLED or COMPLETED, it has no later status change at all; and the
    order's final status and the last entry of its history are that terminal status."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery, max_copies=1), label="copies"))
    outputs, book = run(events)
    show("outputs", outputs)
    for order_id, outs in per_order(status_changes(outputs)).items():
        terminal = [n for n, o in enumerate(outs) if o["to_status"] in statuses.TERMINAL]
        if terminal:
            first = terminal[0]
            assert outs[first + 1:] == [], f"{order_id} changed status after {outs[first]['to_status']}"
            order = book.orders[order_id]
            assert order["status"] == outs[first]["to_status"]
            assert order["history"][-1]["to_status"] == outs[first]["to_status"]
            # Only the end of its retention is pending (and its after-sales cases' deadlines), and not
            # before the retention period is over.
            assert {name.split(":")[0] for name in order["deadlines"]} <= {
                "FORGET", "AFTER_SALES_RESPONSE", "RETURN_SHIP_WINDOW"} and "FORGET" in order["deadlines"]
            assert order["deadlines"]["FORGET"] >= outs[first]["at"] + POLICY.default.retention


@settings(max_examples=150, **SETTINGS)
@given(deliveries())
def test_at_most_one_terminal_status_change_per_order(delivery):
    """Each order gets at most one status change to CANCELLED or COMPLETED in the outputs, and
    the final order's history agrees with the outputs (one entry per status change output)."""
    outputs, book = run(delivery.events)
    show("outputs", outputs)
    terminal = Counter(o["order_id"] for o in status_changes(outputs) if o["to_status"] in statuses.TERMINAL)
    assert all(count == 1 for count in terminal.values()), terminal
    for order_id, outs in per_order(status_changes(outputs)).items():
        history = book.orders[order_id]["history"]
        assert [(h["from_status"], h["to_status"], h["reason"], h["at"]) for h in history] == \
               [(o["from_status"], o["to_status"], o["reason"], o["at"]) for o in outs]


# --- 3: determinism -------------------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(deliveries(), st.data())
def test_replaying_twice_gives_exactly_the_same_outputs(delivery, data):
    """Two replays of the same delivery (random duplicates mixed in) into fresh order books give
    equal output lists (every field, output ids included, same order), equal order books and
    equal tallies; the replay does not modify the events it is given."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery, max_copies=1), label="copies"))
    pristine = copy.deepcopy(events)
    first, book1 = run(events)
    second, book2 = run(copy.deepcopy(events))
    show("first replay", first)
    assert events == pristine, "the replay modified its input events"
    assert first == second
    assert book1.orders == book2.orders
    assert book1.tally == book2.tally


# --- 4: duplicated delivery -----------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(deliveries(), st.data())
def test_duplicated_delivery_of_applied_events_changes_nothing(delivery, data):
    """Every copy of an event that the plain replay applied (its id is in its order's `seen`),
    1 to 3 copies each, inserted at random later positions: the replay gives the same final
    order dicts (status, history, deadlines, conditions, tracking, seen, ... all of it), the
    very same output list (no output at all for a copy, so equal status changes in particular),
    and counts every copy as a duplicate.

    Narrowed to applied events because of a core bug: the id of a rejected (dead-lettered)
    event is not remembered, so a later copy of it is evaluated afresh: dead-lettered again
    under the same output_id, or even applied if the status has moved on. See
    test_a_repeated_id_of_a_rejected_event_changes_nothing below. Copies of events held for
    an order that never appeared (dead-lettered after the grace period) are left out too: the
    order is forgotten with the ids, so a copy arriving after its creation is applied.
    """
    plain, plain_book = run(delivery.events)
    applied = {eid for order in plain_book.orders.values() for eid in order["seen"]}
    copies = data.draw(redelivered(delivery), label="copies")
    copies = [(index, slot) for index, slot in copies if delivery.events[index]["event_id"] in applied]
    events = with_copies(delivery.events, copies)
    note("with copies:\n" + repr(Delivery(events)))
    outputs, book = run(events)
    show("plain outputs", plain)
    show("outputs with copies", outputs)
    assert book.orders == plain_book.orders
    assert outputs == plain
    assert {o["output_id"] for o in status_changes(outputs)} == {o["output_id"] for o in status_changes(plain)}
    assert book.tally["duplicates"] == plain_book.tally["duplicates"] + len(copies)


def test_a_repeated_id_of_a_rejected_event_changes_nothing():
    ship = build.shipped("o", T0 + HOUR)  # rejected: the order is UNPAID
    events = [build.created("o"), ship, build.paid("o", T0 + 2 * HOUR), copy.deepcopy(ship)]
    plain, plain_book = run(events[:-1], until=T0 + 3 * HOUR)
    outputs, book = run(events, until=T0 + 3 * HOUR)
    assert book.orders["o"]["status"] == plain_book.orders["o"]["status"] == "AWAITING_SHIPMENT"
    assert outputs == plain
    assert len({o["output_id"] for o in outputs}) == len(outputs)


def test_a_deadline_re_armed_at_the_same_due_time_gets_a_new_output_id():
    events = [build.created("o"), build.paid("o", T0 + MIN), build.shipped("o", T0 + DAY),
              build.confirmed("o", T0 + 7 * DAY),  # refused (not delivered), but moves the clock past +6 d
              build.update("o", T0 + DAY)]  # a late scan stamped like the hand-over: stall due at +6 d again
    outputs, _ = run(events, until=T0 + 8 * DAY)
    stalled = [o for o in outputs if o.get("kind") == "SHIPMENT_STALLED"]
    assert len(stalled) == 2
    assert stalled[0]["output_id"] != stalled[1]["output_id"]


# --- 5: reordered delivery within a short window --------------------------------------------------

WINDOW_START = st.integers(0, 2 * MIN)
WINDOW_GAP = st.integers(1, 45_000)
WINDOW_EVENTS = 14
WINDOW_END = T0 + 12 * MIN
# Orders start within 2 minutes of T0 and have at most 14 events at most 45 s apart: every event
# time lies in [T0, T0 + 12 min), so the replay's clock (the latest event time so far) stays
# below T0 + 12 min until the last event. Every deadline runs from an event of its order, and
# the shortest is the 15-minute payment reminder (then the 1 h orphan grace, 48 h, ...): none
# is due while the window's events arrive, whatever their order.


class Walks(list):
    """Each order's events in event-time order; its repr is one readable line per event."""

    def __repr__(self) -> str:
        return "Walks([\n" + "".join(f"    {describe(e)}\n" for walk in self for e in walk) + "])"


@st.composite
def window_orders(draw, off_script: int) -> Walks:
    walks = Walks(draw(order_walk(f"o{n + 1}", T0 + draw(WINDOW_START), gap=WINDOW_GAP, max_events=WINDOW_EVENTS,
                                  off_script=off_script, created_first=True, repeat_created=False,
                                  after_cancel=off_script > 0))
                  for n in range(draw(st.integers(1, 4))))
    assert all(T0 <= e["event_time"] < WINDOW_END for walk in walks for e in walk)
    return walks


def interleave(data, sequences: list[list[dict]]) -> list[dict]:
    """A random merge that keeps each sequence's own order."""
    labels = data.draw(st.permutations([n for n, seq in enumerate(sequences) for _ in seq]),
                       label="arrival, as the index of the order each arriving event belongs to")
    cursors = [iter(seq) for seq in sequences]
    return [next(cursors[n]) for n in labels]


def in_time_order(walks: list[list[dict]]) -> list[dict]:
    return sorted((e for walk in walks for e in walk), key=lambda e: e["event_time"])


@settings(max_examples=100, **SETTINGS)
@given(window_orders(off_script=3), st.data())
def test_events_arriving_before_their_creation_are_applied_as_if_in_order(walks, data):
    """Within a window shorter than any deadline (all events within 12 minutes), deliver each order's
    events as: any permutation of a prefix (in event time) of its events after ORDER_CREATED,
    then ORDER_CREATED, then the rest in event-time order; the orders' arrivals interleaved at
    random. This is exactly what hold-until-created + release-in-event-time-order makes
    equivalent to in-order delivery, so, compared with the delivery in event-time order:
    every final order dict is equal (including its seen list, tracking, deadlines) and each
    order's outputs are the same list (ids included), through to the deadlines after the window.
    Events invalid for the status (the walk goes off script) are included: they must be
    rejected the same way. Times within an order are strictly increasing (the release sorts by
    event time only, so ties would be applied in arrival order)."""
    arrivals = []
    for walk in walks:
        created, rest = walk[0], walk[1:]
        held = data.draw(st.integers(0, len(rest)), label=f"{walk[0]['order_id']} held")
        early = [rest[i] for i in data.draw(st.permutations(range(held)), label="their arrival order")]
        arrivals.append(early + [created] + rest[held:])
    reordered = interleave(data, arrivals)
    in_order = in_time_order(walks)
    note("in order:\n" + repr(Delivery(in_order)) + "\nreordered:\n" + repr(Delivery(reordered)))
    expected, expected_book = run(in_order)
    outputs, book = run(reordered)
    show("in-order outputs", expected)
    show("reordered outputs", outputs)
    assert book.orders == expected_book.orders
    assert per_order(outputs) == per_order(expected)
    assert book.tally["buffered"] == 0


def shuffled(data, walk: list[dict]) -> list[dict]:
    """ORDER_CREATED moved anywhere (or left first), then up to 2 swaps of neighbours among the
    events arriving after it (a swap among the events arriving before it would change nothing:
    they are held and sorted)."""
    order_id = walk[0]["order_id"]
    arrival = list(walk[1:])
    first = data.draw(st.booleans(), label=f"{order_id}: ORDER_CREATED arrives first")
    created_at = 0 if first else data.draw(st.integers(0, len(arrival)), label=f"{order_id}: ORDER_CREATED arrives at")
    arrival.insert(created_at, walk[0])
    if created_at + 2 < len(arrival):
        swaps = data.draw(st.lists(st.integers(created_at + 1, len(arrival) - 2), min_size=1, max_size=2),
                          label=f"{order_id}: then swap arrival i and i+1 for i in")
        for index in swaps:
            arrival[index], arrival[index + 1] = arrival[index + 1], arrival[index]
    return arrival


def applied_out_of_order(arrival: list[dict]) -> bool:
    """Whether the core applies this order's arrivals in another order than event time."""
    created = next(n for n, e in enumerate(arrival) if e["event_type"] == "ORDER_CREATED")
    applied = [arrival[created]] + sorted(arrival[:created], key=lambda e: e["event_time"]) + arrival[created + 1:]
    return applied != sorted(arrival, key=lambda e: e["event_time"])


def took_normal_effect(outputs: list[dict]) -> bool:
    """No event was dead-lettered and no payment arrived after a cancellation."""
    return not any(o["output"] == "dead_letter" or o.get("kind") == "PAYMENT_AFTER_CANCEL" for o in outputs)


@settings(max_examples=250, **SETTINGS)
@given(window_orders(off_script=0), st.data())
def test_reordering_within_a_window_that_every_event_survives_reaches_the_same_state(walks, data):
    """Same 12-minute window (no deadline can fall between the events), plausible walks, and an
    arbitrary-ish per-order reordering: ORDER_CREATED anywhere, plus neighbour swaps; orders
    interleaved at random. The core reorders only what arrives before ORDER_CREATED; after it,
    events are applied in arrival order, so a swap can make an event invalid (shipped before
    paid) or change what it means (a payment after a seller's cancel is PAYMENT_AFTER_CANCEL,
    not PAID). So the property is conditional: when both the event-time-order delivery and the
    reordered one take every event normally (no dead letter, no PAYMENT_AFTER_CANCEL), each
    order ends in the same status, with the same history as a list of (from, to, reason), and
    the same tracking entries as a multiset.

    Not claimed: history `at` (the first logistics update applied moves the order to
    IN_TRANSIT, and two updates may swap; a pending cancel request may be a different one),
    conditions, deadlines and alerts (an update before a redelivery request is the parcel
    coming back, after it the redelivery moving; and, a core bug, an older update applied after
    a newer one re-arms the stall clock from the older time, see
    test_an_older_logistics_update_arriving_late_does_not_rewind_the_stall_clock), or the
    order of tracking entries and after-sales cases.
    """
    arrivals = [shuffled(data, walk) for walk in walks]
    reordered = interleave(data, arrivals)
    in_order = in_time_order(walks)
    expected, expected_book = run(in_order)
    outputs, book = run(reordered)
    normal = took_normal_effect(expected) and took_normal_effect(outputs)
    event("every event took its normal effect" if normal else "some event was refused or reinterpreted")
    assume(normal)
    event("applied in another order than event time" if any(map(applied_out_of_order, arrivals))
          else "applied in event-time order (only held events reordered)")
    note("in order:\n" + repr(Delivery(in_order)) + "\nreordered:\n" + repr(Delivery(reordered)))
    show("in-order outputs", expected)
    show("reordered outputs", outputs)
    assert book.orders.keys() == expected_book.orders.keys()
    for order_id, want in expected_book.orders.items():
        got = book.orders[order_id]
        assert got["status"] == want["status"], order_id
        assert [(h["from_status"], h["to_status"], h["reason"]) for h in got["history"]] == \
               [(h["from_status"], h["to_status"], h["reason"]) for h in want["history"]], order_id
        assert sorted(map(repr, got["tracking"])) == sorted(map(repr, want["tracking"])), order_id


def test_an_older_logistics_update_arriving_late_does_not_rewind_the_stall_clock():
    base = [build.created("o"), build.paid("o", T0 + MIN), build.shipped("o", T0 + DAY)]
    older, newer = build.update("o", T0 + 2 * DAY), build.update("o", T0 + 3 * DAY)
    in_order, _ = run(base + [older, newer], until=T0 + 20 * DAY)
    swapped, book = run(base + [newer, older], until=T0 + 20 * DAY)
    stalled_at = lambda outputs: [o["at"] - T0 for o in outputs if o.get("kind") == "SHIPMENT_STALLED"]
    assert stalled_at(in_order) == [8 * DAY]  # 5 days after the latest update
    assert stalled_at(swapped) == [8 * DAY]
    assert book.orders["o"]["packages"][0]["last_logistics_at"] == T0 + 3 * DAY


# --- 6: counts reconcile --------------------------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(deliveries(), st.data())
def test_counts_reconcile_and_every_dead_letter_says_why_and_carries_its_event(delivery, data):
    """With random duplicates of any event mixed in: tally["in"] equals the number of events
    delivered and equals applied + dead_lettered + duplicates + buffered; nothing is still
    buffered once the clock has run 30 days past the last event; there is one dead-letter
    output per dead-lettered count; every dead letter has a non-empty reason, the order id of
    its event, and carries an event equal to one that was delivered (same event_id)."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery), label="copies"))
    outputs, book = run(events)
    show("outputs", outputs)
    tally = book.tally
    assert tally["in"] == len(events)
    assert tally["in"] == tally["applied"] + tally["dead_lettered"] + tally["duplicates"] + tally["buffered"], tally
    assert tally["buffered"] == 0 and tally["after_until"] == 0
    dead = [o for o in outputs if o["output"] == "dead_letter"]
    assert len(dead) == tally["dead_lettered"]
    by_id = {e["event_id"]: e for e in events}
    for o in dead:
        assert isinstance(o["reason"], str) and o["reason"].strip(), o
        assert isinstance(o["event"], dict) and o["event"] == by_id[o["event"]["event_id"]], o
        assert o["order_id"] == o["event"]["order_id"]


# --- 7: output ids and deadline times -------------------------------------------------------------

class RecordingOrders(dict):
    """The replay's order store, noting every deadline an order is stored with."""

    def __init__(self, seen: set):
        super().__init__()
        self.deadlines_seen = seen

    def __setitem__(self, order_id, order):
        self.deadlines_seen.update((order_id, name, due) for name, due in order["deadlines"].items())
        super().__setitem__(order_id, order)


# Outputs that only a deadline causes, and the deadline that causes them.
DEADLINE_OF_KIND = {
    "SHIP_BY_OVERDUE": "SHIP_BY", "SHIPMENT_STALLED": "SHIPMENT_STALLED",
    "REDELIVERY_WINDOW_EXPIRED": "REDELIVERY_WINDOW", "REDELIVERY_DISPATCH_OVERDUE": "REDELIVERY_DISPATCH",
}
DEADLINE_OF_REASON = {
    "UNPAID_TIMEOUT": "UNPAID_TIMEOUT", "CANCEL_REQUEST_TIMEOUT": "CANCEL_REQUEST_TIMEOUT",
    "LOGISTICS_FAILURE": "REDELIVERY_WINDOW", "AUTO_CONFIRMED": "AUTO_CONFIRM",
    "REMORSE_PERIOD_ENDED": "REMORSE_PERIOD",
}
# After-sales case updates and alerts that only a case's deadline causes (named KIND:case_id).
DEADLINE_OF_CASE = {"AUTO_APPROVED": "AFTER_SALES_RESPONSE", "RETURN_NOT_SHIPPED": "RETURN_SHIP_WINDOW",
                    "AFTER_SALES_AUTO_APPROVED": "AFTER_SALES_RESPONSE"}
# Status changes that an event causes, or a package given up when its redelivery window expires
# (the rest of the order is then delivered, or collected).
EVENT_OR_REDELIVERY_WINDOW = {"DELIVERED", "COLLECTED"}


def _case_deadline(name: str | None, fields: dict) -> str | None:
    return name and f"{name}:{fields['case_id']}"


def deadline_of(o: dict) -> set[str | None]:
    """The deadlines that may have caused the output (None: an event of its order). A package's
    deadline is KIND for the order's first package, KIND:package_id for a later one."""
    if o["output"] == "reminder":
        return {o["kind"]}  # PAYMENT_REMINDER_15M, ...: named after its deadline
    if o["output"] == "alert":
        kind, package = DEADLINE_OF_KIND.get(o["kind"]), o["detail"].get("package_id")
        if kind:
            return {kind, f"{kind}:{package}"} if package else {kind}
        return {_case_deadline(DEADLINE_OF_CASE.get(o["kind"]), o["detail"])}
    if o["output"] == "case_update":
        return {_case_deadline(DEADLINE_OF_CASE.get(o["reason"]), o)}
    if o["output"] == "status_change":
        if o["reason"] in EVENT_OR_REDELIVERY_WINDOW or o["reason"] == "LOGISTICS_FAILURE":
            return {None, "REDELIVERY_WINDOW:*"} - ({None} if o["reason"] == "LOGISTICS_FAILURE" else set())
        return {DEADLINE_OF_REASON.get(o["reason"])}
    if o["output"] == "dead_letter" and "never appeared" in o["reason"]:
        return {ORPHAN_GRACE}
    return {None}


def _any_package(cause: str | None) -> str | None:
    """A package's deadline by its kind alone (KIND:*), for outputs that do not name the package."""
    return cause if cause is None or not cause.startswith("REDELIVERY_WINDOW") else "REDELIVERY_WINDOW:*"


@settings(max_examples=150, **SETTINGS)
@given(deliveries())
def test_output_ids_are_unique_and_deadline_outputs_happen_at_a_deadline_the_order_had(delivery):
    """Each delivered event once (no copies; out of order, before creation, never created as
    drawn): every output_id is unique across the replay. Every output caused by a deadline
    (reminders; SHIP_BY_OVERDUE, SHIPMENT_STALLED, REDELIVERY_WINDOW_EXPIRED and
    REDELIVERY_DISPATCH_OVERDUE alerts; UNPAID_TIMEOUT, CANCEL_REQUEST_TIMEOUT,
    LOGISTICS_FAILURE, AUTO_CONFIRMED and REMORSE_PERIOD_ENDED status changes; "never appeared" dead letters) has
    `at` equal to the due time of a deadline of that name that its order had (scheduled by a
    rule, or stored with the order), and its output_id is the one derived from that deadline.
    Every other output is caused by an event of its order: its output_id derives from that
    event's id and its `at` is that event's time."""
    scheduled: set = set()
    real_schedule = Change.schedule

    def schedule(self, deadline, due):
        scheduled.add((self.order["order_id"], deadline, due))
        real_schedule(self, deadline, due)

    with patch.object(Change, "schedule", schedule):
        outputs, _ = run(delivery.events, orders=RecordingOrders(scheduled))
    show("outputs", outputs)
    ids = Counter(o["output_id"] for o in outputs)
    assert not [i for i, n in ids.items() if n > 1], "output ids repeat"

    causes = {}  # output_id -> (deadline name or None, expected at)
    for e in delivery.events:
        for n in range(4):
            causes[output_id(e["order_id"], e["event_id"], n)] = (None, e["event_time"])
        for refused in ("rejected", "forgotten"):  # a dead letter's id is kept apart from the event's outputs
            causes[output_id(e["order_id"], f"{refused}@{e['event_id']}", 0)] = (None, e["event_time"])
    for order_id, name, due in scheduled:
        for fired in range(64):  # the order's count of deadlines fired before this one
            for n in range(4):
                causes[output_id(order_id, f"{name}@{due}#{fired}", n)] = (name, due)
        if name == ORPHAN_GRACE:
            for k in range(len(delivery.events)):
                causes[output_id(order_id, f"{name}@{due}/{k}", 0)] = (name, due)
    for o in outputs:
        assert o["output_id"] in causes, f"no cause found for {o}"
        cause, at = causes[o["output_id"]]
        assert cause in deadline_of(o) or _any_package(cause) in deadline_of(o), (o, cause)
        assert o["at"] == at, o
        if cause is not None:
            assert (o["order_id"], cause, o["at"]) in scheduled


# --- 8: lines given up and lines shipped -----------------------------------------------------------

REFUNDING = ("LINES_CANCELLED", "REDELIVERY_WINDOW_EXPIRED")  # alerts that give lines up, with their refund


def check_lines(events: list[dict], outputs: list[dict], book: OrderBook, room) -> None:
    """Per order: no line is given up twice (by LINES_CANCELLED or REDELIVERY_WINDOW_EXPIRED); each
    such refund is what its lines cost, but never more than what was left of the payment, so that with
    the after-sales refunds it never exceeds what was paid; a line is consumed (shipped) at most once,
    and never if the seller cancelled it; the packages' lines are disjoint; each line's stock hold is
    released at most once, and never both released and consumed."""
    created: dict[str, dict] = {}
    for e in events:  # the creation that arrived first is the one applied (a later copy is refused)
        if e["event_type"] == "ORDER_CREATED":
            created.setdefault(e["order_id"], e)
    paid = {o["order_id"]: None for o in outputs}
    for e in events:
        paid.setdefault(e["order_id"], None)
    for order_id, outs in per_order(outputs).items():
        alerts = [o["detail"] for o in outs if o.get("kind") in REFUNDING]
        named = [line for alert in alerts for line in alert["line_ids"].split(",")]
        assert len(named) == len(set(named)), f"{order_id}: a line given up twice: {named}"
        order = book.orders.get(order_id)
        if alerts and order is not None:
            items = dict(zip(order_lines.line_ids(created[order_id]), created[order_id]["line_items"]))
            left = Decimal(order["paid_amount"])
            for alert in alerts:
                cost = sum(Decimal(items[line]["unit_price"]) * items[line]["quantity"]
                           for line in alert["line_ids"].split(","))
                assert Decimal(alert["amount"]) == min(cost, max(left, Decimal(0))), (alert, cost, left)
                left -= cost
            cases = sum((Decimal(case["refunded"]) for case in order["after_sales"] if "refunded" in case), Decimal(0))
            assert sum(Decimal(alert["amount"]) for alert in alerts) + cases <= Decimal(order["paid_amount"])
        if order is not None and order.get("packages"):
            shipped = [line for package in order["packages"] for line in package["line_ids"]]
            assert len(shipped) == len(set(shipped)), f"{order_id}: a line in two packages: {order['packages']}"
            by_seller = {line for line, why in order_lines.cancelled(order).items()
                         if why["reason"] != "LOGISTICS_FAILURE"}
            assert not by_seller & set(shipped), f"{order_id}: cancelled lines {by_seller} shipped"
    actions = Counter((r["order_id"], r["line"], r["action"]) for r in room.requests)
    for (order_id, line, action), count in actions.items():
        if action == "CONSUME":
            assert count == 1, f"{order_id}: line {line} shipped {count} times"
        if action == "RELEASE":
            assert count == 1 and (order_id, line, "CONSUME") not in actions, (order_id, line)


@settings(max_examples=150, **SETTINGS)
@given(deliveries(), st.data())
def test_no_line_is_given_up_twice_or_shipped_twice_and_refunds_stay_within_the_payment(delivery, data):
    """check_lines, over random walks (packages of some lines, events naming packages or not) with
    random duplicate deliveries mixed in."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery, max_copies=1), label="copies"))
    room = build.RecordingRoom()
    outputs, book = run(events, room=room)
    show("outputs", outputs)
    check_lines(events, outputs, book, room)
    event(f"{sum(1 for o in outputs if o.get('kind') in REFUNDING)} lines given up")
    event(f"{max((len(o.get('packages') or ()) for o in book.orders.values()), default=0)} packages at most")


@st.composite
def package_stories(draw) -> Delivery:
    """A paid order of 1 to 3 lines (paid in full, or in part by a voucher) shipped in 1 to 3
    packages of random lines (some lines maybe never shipped, or cancelled by the seller first, or
    named by a second package too), each
    package then scanned, failed, redelivered and delivered in a random mix, naming its package (or
    not, now and then); an after-sales case and refund at the end; 1 minute to 4 days between events,
    so stall clocks, redelivery windows and the ship-by pass."""
    items = build.lines(draw(st.integers(1, 3)))
    ids = [str(n) for n in range(1, len(items) + 1)]
    events = [build.created("o1", T0, line_items=items, total_amount=build.total(items)),
              build.paid("o1", T0 + MIN, draw(st.sampled_from((build.total(items), "15.00"))))]
    steps = []
    if draw(st.integers(0, 3)) == 0:
        steps.append(build.seller_cancelled("o1", 0, line_ids=draw(st.lists(st.sampled_from(ids), min_size=1,
                                                                               max_size=len(ids), unique=True))))
    order = draw(st.permutations(ids))
    cuts = sorted(draw(st.lists(st.integers(1, len(ids)), max_size=2, unique=True)))
    parts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)]) if order[a:b]]
    parts = parts[:draw(st.integers(1, len(parts)))]  # the last parts maybe never shipped
    for n, part in enumerate(parts):
        extra = draw(st.none() | st.sampled_from(ids))  # now and then a line of another package too
        shipped = list(part) + ([extra] if extra is not None and extra not in part else [])
        steps.append(build.shipped("o1", 0, package_id=f"P{n + 1}", line_ids=shipped))
    packages = [f"P{n + 1}" for n in range(len(parts))]
    for _ in range(draw(st.integers(0, 8))):
        package = draw(st.sampled_from(packages))
        named = {"package_id": package} if draw(st.integers(0, 9)) else {}
        maker = draw(st.sampled_from((build.update, build.update, build.failed, build.redelivery, build.delivered,
                                      build.delivered)))
        steps.insert(draw(st.integers(packages.index(package) + 1, len(steps))), maker("o1", 0, **named))
    if draw(st.booleans()):
        steps.append(build.after_sales("o1", 0, "REFUND", case_id="c1"))
        steps.append(build.refund_issued("o1", 0, "c1", draw(st.sampled_from(("5.00", "10.00", "140.00")))))
    at = T0 + 2 * HOUR  # after the remorse hold of a GB order
    for n, made in enumerate(steps):
        at += draw(st.integers(MIN, 4 * DAY))
        events.append({**made, "event_time": at, "event_id": f"o1-s{n}"})
    for n, made in enumerate(events[:2]):
        made["event_id"] = f"o1-d{n}"
    assert all(contract.problem(e) is None for e in events), [contract.problem(e) for e in events]
    return Delivery(events)


@settings(max_examples=200, **SETTINGS)
@given(package_stories(), st.data())
def test_over_random_package_splits_a_line_ships_once_and_refunds_stay_within_the_payment(delivery, data):
    """check_lines over orders split into packages, with duplicates mixed in; and the order follows its
    packages: it is delivered only when every package not given up is, it is cancelled for a
    logistics failure only when every package was given up and nothing was left to ship, and it stays
    partly shipping while some open line is not shipped."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery, max_copies=1), label="copies"))
    room = build.RecordingRoom()
    outputs, book = run(events, room=room)
    show("outputs", outputs)
    check_lines(events, outputs, book, room)
    order = book.orders["o1"]
    every = order.get("packages") or ()
    kept = [p for p in every if p["status"] != "CANCELLED"]
    unshipped = set(order_lines.open_line_ids(order)) - {line for p in every for line in p["line_ids"]}
    if order["status"] in (statuses.DELIVERED, statuses.COMPLETED):
        assert kept and all(p["status"] == "DELIVERED" for p in kept) and not unshipped
    if order.get("cancel_reason") == "LOGISTICS_FAILURE":
        assert not kept and not unshipped
    if order["status"] == statuses.PARTIALLY_SHIPPING:  # a package was shipped (maybe given up since)
        assert unshipped and every
    event(f"ends {order['status']}")


# --- 9: after-sales refunds -----------------------------------------------------------------------

@st.composite
def after_sales_stories(draw) -> Delivery:
    """A delivered order of 1 to 3 lines, then 1 to 3 cases, each mostly on its natural path (asked,
    answered or left unanswered past 48 h, shipped back and received for a return, refunded with an
    amount around what its lines cost) with steps left out or added at random, and a confirmation;
    1 minute to 3 days between events, so answers come late and return windows pass."""
    items = build.lines(draw(st.integers(1, 3)))
    events = [build.created("o1", T0, line_items=items, total_amount=build.total(items)),
              build.paid("o1", T0 + MIN, draw(st.sampled_from((build.total(items), "5.00")))),
              build.shipped("o1", T0 + 2 * HOUR), build.delivered("o1", T0 + DAY)]
    for n, event_ in enumerate(events):
        event_["event_id"] = f"o1-d{n}"
    at, n = T0 + DAY, 0
    steps = []
    for case in range(draw(st.integers(1, 3))):
        case_id = f"c{case + 1}"
        chosen = draw(st.lists(st.sampled_from([str(k) for k in range(1, len(items) + 1)]), min_size=1,
                               max_size=len(items), unique=True))
        cost = build.total([items[int(line) - 1] for line in chosen])
        steps.append(build.after_sales("o1", 0, draw(st.sampled_from(("RETURN", "REFUND", "REFUND"))),
                                       case_id=case_id, line_ids=chosen))
        if draw(st.booleans()):
            steps.append(build.case_response("o1", 0, case_id, draw(st.sampled_from(("ACCEPT", "ACCEPT", "REJECT")))))
        steps += [build.return_shipped("o1", 0, case_id), build.return_received("o1", 0, case_id)][
            :draw(st.integers(0, 2))]
        amount = draw(st.sampled_from((cost, str(Decimal(cost) + Decimal("0.01")), str(Decimal(cost) / 2))))
        steps.append(build.refund_issued("o1", 0, draw(st.sampled_from((case_id, "c1"))), amount))
    steps.insert(draw(st.integers(0, len(steps))), build.confirmed("o1", 0))
    for made in steps:
        at += draw(st.integers(MIN, 3 * DAY))
        events.append({**made, "event_time": at, "event_id": f"o1-a{n}"})
        n += 1
    assert all(contract.problem(e) is None for e in events)
    return Delivery(events)


@settings(max_examples=200, **SETTINGS)
@given(after_sales_stories(), st.data())
def test_refunds_never_exceed_the_payment_and_no_line_is_refunded_twice(delivery, data):
    """With random duplicate deliveries mixed in, per order: the cases that reached REFUNDED cover
    disjoint lines, each refund is at most what its lines cost, and together they never exceed
    what was paid; every case update starts from the state the previous update of its case left."""
    events = with_copies(delivery.events, data.draw(redelivered(delivery, max_copies=1), label="copies"))
    outputs, book = run(events)
    show("outputs", outputs)
    for order_id, outs in per_order(outputs).items():
        updates = [o for o in outs if o["output"] == "case_update"]
        states: dict[str, str | None] = {}
        for update in updates:
            assert update["from_state"] == states.get(update["case_id"]), update
            states[update["case_id"]] = update["to_state"]
        order = book.orders.get(order_id)
        if order is None:
            continue
        refunded = [case for case in order["after_sales"] if case.get("state") == "REFUNDED"]
        covered = [line for case in refunded for line in case["line_ids"]]
        assert len(covered) == len(set(covered)), f"{order_id}: a line refunded twice"
        for case in refunded:
            assert Decimal(case["refunded"]) <= order_lines.amount(order, case["line_ids"])
        if refunded:  # with the lines the seller cancelled, never more than was paid
            given = sum(Decimal(case["refunded"]) for case in refunded) + sum(
                (Decimal(line["amount"]) for line in (order.get("cancelled_lines") or {}).values()), Decimal(0))
            assert given <= Decimal(order["paid_amount"])
            event(f"{len(refunded)} refunds")
