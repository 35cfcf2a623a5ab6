"""The lifecycle core: (order, event or clock, now) -> (new order, outputs, deadlines).

No Kafka, no Faust, no clock of its own: the live worker, the replay command
and the tests all call these two functions.

Time: deadlines are computed from event time; a deadline takes effect when the
clock passes it, with `at` = its due time. Before an event is applied, the
order's deadlines that are due by `now` fire first, so the result never
depends on how late a timer tick was.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter

from . import after_sales, cancellation, completion, confirmation, contract, payment, shipping
from . import status as st
from .order import Change, Rejected, copy_order, deadline_kind, encoded_size, new_order
from .policy import Policy

ORPHAN_GRACE = "ORPHAN_GRACE"
_DAY = 86_400_000
FORGET = "FORGET"  # a finished order's retention ends; while an after-sales case is open it is kept

EVENT_RULES = {**payment.EVENTS, **cancellation.EVENTS, **shipping.EVENTS, **completion.EVENTS, **after_sales.EVENTS}
DEADLINE_RULES = {**payment.DEADLINES, **cancellation.DEADLINES, **shipping.DEADLINES, **completion.DEADLINES,
                  **after_sales.DEADLINES}
assert set(EVENT_RULES) == set(contract.ESSENTIAL), "every event type of the contract needs a rule"
# Events that add to a list of the order, with the limit (Limits) of that list.
_CAPPED = {"LOGISTICS_UPDATE": ("tracking", "tracking_updates"), "DELIVERY_FAILED": ("tracking", "tracking_updates"),
           "AFTER_SALES_REQUESTED": ("after_sales", "after_sales_cases")}
_DUE_THEN_NAME = itemgetter(1, 0)  # the key of a (name, due) deadline: earliest first, ties by name


@dataclass
class Step:
    order: dict | None  # None: nothing is kept for this order id
    outputs: list[dict] = field(default_factory=list)
    # What happened to the events: applied, dead_lettered, duplicates, and buffered
    # (held until their order is created; negative when held events are released).
    tally: Counter = field(default_factory=Counter)

    @property
    def deadlines(self) -> dict[str, int]:
        return self.order["deadlines"] if self.order else {}


def _entries(order: dict, container: str, event: dict) -> int:
    """How many entries a capped list holds: a package's own tracking when the event names one (one
    package's scans must not crowd out another's failed delivery)."""
    if container == "tracking" and event.get("package_id") is not None:
        return len(shipping.package_tracking(order, event["package_id"]))
    return len(order[container])


def _whose(container: str, event: dict) -> str:
    package = event.get("package_id") if container == "tracking" else None
    return f"package {package[:128]}'s tracking" if package is not None else f"the order's {container}"


def _deadline_rule(name: str):
    """The rule of a deadline; one per after-sales case is named KIND:case_id."""
    return payment.payment_reminder if payment.is_reminder(name) else DEADLINE_RULES.get(deadline_kind(name))


def advance(order: dict | None, now: int, policy: Policy) -> Step:
    """Fire every deadline of the order that is due by `now`, earliest first."""
    step = Step(order)
    while step.order is not None and step.deadlines:
        name, due = min(step.deadlines.items(), key=_DUE_THEN_NAME)
        if due > now:
            break
        if name == ORPHAN_GRACE:
            _give_up_on_orphan(step, due)
            continue
        if name == FORGET and st.AFTER_SALES_OPEN not in step.order["conditions"]:
            step.order = None  # its retention is over: the order is deleted (its stock holds with it)
            continue
        # The firing count keeps ids apart when a deadline is re-armed at the same due time.
        fired = step.order.get("fired", 0)
        change = Change(step.order, f"{name}@{due}#{fired}", due, policy.for_region(step.order.get("region")))
        change.order["fired"] = fired + 1
        change.cancel_deadlines(name)
        rule = _deadline_rule(name)
        if rule is not None:  # a deadline kind this version no longer knows is dropped
            rule(change, name)
        _retain(change)
        step.order = change.order
        step.outputs += change.outputs
    return step


def _give_up_on_orphan(step: Step, due: int) -> None:
    """The order never appeared: dead-letter the events held for it and forget it."""
    held = step.order["early"]
    for n, event in enumerate(held):
        change = Change(step.order, f"{ORPHAN_GRACE}@{due}/{n}", due, None)
        change.reject(f"order {event['order_id']} never appeared (no ORDER_CREATED within the grace period), "
                      "or it was forgotten when its retention period ended", event)
        step.outputs += change.outputs
    step.tally["dead_lettered"] += len(held)
    step.tally["buffered"] -= len(held)
    step.order = None


def apply(order: dict | None, event: dict, now: int, policy: Policy) -> Step:
    """Apply one upstream event (a dict in the JSON form of DOMAIN.md) at clock time `now`."""
    order_id = event.get("order_id") or ""
    problem = contract.problem(event)
    if problem:
        change = Change(order or new_order(str(order_id)), f"invalid@{event.get('event_id')}", _event_time(event, now), None)
        change.reject(problem, event)
        return Step(order, change.outputs, Counter(dead_lettered=1))
    step = advance(order if order is not None else new_order(order_id), now, policy)
    if step.order is None:  # held events were just given up on; this one starts afresh
        step.order = new_order(order_id)
    order = step.order
    event_id = event["event_id"]
    if (event_id in order["seen"] or event_id in order.get("rejected", ())
            or any(e["event_id"] == event_id for e in order["early"])):
        step.tally["duplicates"] += 1
        return step
    if order["status"] is not None:
        _apply_known(step, event, policy)
    else:
        _unknown(step, event, now, policy)
    if step.order["status"] is None and not step.order["early"]:
        step.order = None  # never created (or its creation was rejected): nothing worth keeping
    return step


def retained(order: dict, policy: Policy) -> dict:
    """An order stored before retention came in: a finished one gets its FORGET deadline now, counted
    from when it finished, as if it had been scheduled then."""
    rules = policy.for_region(order.get("region"))
    if order["status"] not in st.TERMINAL or FORGET in order["deadlines"] or rules is None:
        return order
    change = Change(order, FORGET, order["history"][-1]["at"], rules)
    _retain(change)
    return change.order


def _unknown(step: Step, event: dict, now: int, policy: Policy) -> None:
    """An event for an order id that has no order (yet, or any more)."""
    if now - event["event_time"] >= (retention := _retention(event, policy)):
        # Its order may have finished and been forgotten: it must not start a new one. A copy of an
        # event its order took before: the cause keeps the dead letter's id apart from its outputs.
        _refuse(step, event, f"order {event['order_id']} is not known and the event is older than the retention "
                             f"period ({retention // _DAY} days): its order may have been forgotten", policy,
                f"forgotten@{event['event_id']}")
    elif event["event_type"] != "ORDER_CREATED":
        _hold(step, event, now, policy)
    else:
        _apply_known(step, event, policy)
        if step.order["status"] is not None and step.order["early"]:
            _release_held(step, now, policy)


def answer(order: dict | None, reply: dict, policy: Policy) -> Step:
    """Apply the warehouse's answer to one of the order's stock requests (confirmation.py)."""
    if order is None or order["status"] is None:
        return Step(order)
    rules = policy.for_region(order.get("region"))
    cause = f"{reply['problem']}@{reply['line']}"
    change = Change(order, cause, reply["at"], rules)
    confirmation.stock_problem(change, reply)
    if encoded_size(change.order) > policy.limits.order_bytes:  # the alert carries the detail anyway
        change = Change(order, cause, reply["at"], rules)
        confirmation.stock_problem(change, reply, detailed=False)
    return Step(change.order, change.outputs) if change.outputs else Step(order)


def _retention(event: dict, policy: Policy) -> int:
    region = event.get("region") if event["event_type"] == "ORDER_CREATED" else None
    return (policy.for_region(region) or policy.default).retention


def _event_time(event: dict, fallback: int) -> int:
    at = event.get("event_time")
    return at if isinstance(at, int) and not isinstance(at, bool) else fallback


def _hold(step: Step, event: dict, now: int, policy: Policy) -> None:
    limits = policy.limits
    held = copy_order(step.order)
    held["early"].append(event)
    held["deadlines"].setdefault(ORPHAN_GRACE, now + policy.default.orphan_grace)
    if len(held["early"]) > limits.held_events:
        _refuse(step, event, f"{limits.held_events} events are held already for order {event['order_id']}, "
                             "which has not been created", policy)
    elif (size := encoded_size(held)) > limits.order_bytes:
        _refuse(step, event, f"holding it for order {event['order_id']} (not created yet) would take "
                             f"{size} bytes, over the limit of {limits.order_bytes}", policy)
    else:
        step.order = held
        step.tally["buffered"] += 1


def _refuse(step: Step, event: dict, reason: str, policy: Policy, cause: str | None = None) -> None:
    """Dead-letter the event; the order stays as it was, with the id kept to recognise a redelivery.
    The cause keeps the dead letter's id apart from the outputs of the event, should a later copy
    of it be applied (its id is no longer among the latest rejected)."""
    change = Change(step.order, cause or f"rejected@{event['event_id']}", event["event_time"], None)
    change.reject(reason, event)
    if step.order["status"] is not None or step.order["early"]:  # nothing is kept of an unknown id
        rejected = change.edit("rejected")
        rejected.append(event["event_id"])
        del rejected[:-policy.limits.rejected_ids]
    step.order = change.order
    step.outputs += change.outputs
    step.tally["dead_lettered"] += 1


def _settles(before: dict, after: dict) -> bool:
    """Did the step change the order's status, close one of its open conditions or move an after-sales
    case (whose number the order's limit on cases bounds)?"""
    return (after["status"] != before["status"] or not after["conditions"].keys() >= before["conditions"].keys()
            or after.get("after_sales") is not before.get("after_sales"))


def _retain(change: Change) -> None:
    """A finished order is kept for the retention period after its last change (a completed one
    after its after-sales window too), then forgotten."""
    rules = change.rules
    if change.status in st.TERMINAL and rules is not None:
        # Not before its creation's retention is over either, so a late copy of the creation is refused
        # as too old rather than taken for a new order (event times need not come in order).
        since = max(change.at, change.order["created_at"])
        due = since + rules.retention + (rules.after_sales_window if change.status == st.COMPLETED else 0)
        if change.order["deadlines"].get(FORGET, due - 1) < due:
            change.schedule(FORGET, due)


def _release_held(step: Step, now: int, policy: Policy) -> None:
    order = step.order = copy_order(step.order)
    held = sorted(order["early"], key=lambda e: e["event_time"])
    order["early"] = []
    order["deadlines"].pop(ORPHAN_GRACE, None)
    step.tally["buffered"] -= len(held)
    for event in held:
        fired = advance(step.order, now, policy)
        # Never forgotten here: its creation was not older than its retention, which runs from it.
        step.order, step.outputs = fired.order, step.outputs + fired.outputs
        _apply_known(step, event, policy)


def _apply_known(step: Step, event: dict, policy: Policy) -> None:
    """Apply an event to an order that exists (or to its creation)."""
    kind = event["event_type"]
    region = event.get("region") if kind == "ORDER_CREATED" else step.order.get("region")
    rules = policy.for_region(region)
    limits = policy.limits
    order = step.order
    change = Change(order, event["event_id"], event["event_time"], rules, event_id=event["event_id"])
    try:
        change.require(rules is not None, "region {!r} is not served by the region policy", region)
        if kind in _CAPPED:
            container, limit = _CAPPED[kind]
            change.require(_entries(order, container, event) < getattr(limits, limit), "{} holds its limit of {} "
                           "entries already", _whose(container, event), getattr(limits, limit))
        EVENT_RULES[kind](change, event)
        _retain(change)
        change.edit("seen").append(event["event_id"])
        if kind == "ORDER_CREATED":
            # Measured without the held events (each is measured as it is released), with room to grow.
            size = encoded_size({**change.order, "early": []})
            change.require(size <= limits.order_bytes // 2, "the order would take {} bytes when created, over "
                           "half the limit of {} (the room it needs to grow)", size, limits.order_bytes)
        elif not _settles(order, change.order):
            # A step that moves the order on or settles what it asked for is never refused: there are
            # a few of them per order, and refusing them would leave the order stuck.
            change.require(len(order["seen"]) < limits.events, "order {} has taken its limit of {} events",
                           order["order_id"], limits.events)
            size = encoded_size(change.order)
            change.require(size <= limits.order_bytes, "the order would take {} bytes, over the limit of {}",
                           size, limits.order_bytes)
    except Rejected as why:
        _refuse(step, event, f"{why}", policy)
        return
    step.order = change.order
    step.outputs += change.outputs
    step.tally["applied"] += 1
