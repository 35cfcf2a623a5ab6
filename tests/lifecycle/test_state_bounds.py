"""What an order may hold, and how long a finished one is kept: caps and retention in the core (replays)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import orderflow.streams.lifecycle
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy, answer
from orderflow.streams.lifecycle.order import encoded_size
from orderflow.streams.stock.room import StockRoom
from support.orders import (DAY, HOUR, MIN, T0, after_sales, after_sales_resolved, confirmed, created, delivered, paid,
                            review, seller_cancelled, shipped, stock_set, update)

POLICY = Policy.load()
PACKAGED_POLICY = Path(orderflow.streams.lifecycle.__file__).parent / "region_policy.toml"
LIMITS = POLICY.limits
RETENTION, AFTER_SALES = POLICY.default.retention, POLICY.default.after_sales_window


def run(events, until, policy=POLICY):
    book = OrderBook({}, policy)
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), until, policy, book))
    return outputs, book


def dead_letters(outputs):
    return [o for o in outputs if o["output"] == "dead_letter"]


def reconciles(tally):
    return tally["in"] == tally["applied"] + tally["dead_lettered"] + tally["duplicates"] + tally["buffered"]


def delivered_order(order_id, at=T0):
    return [created(order_id, at), paid(order_id, at + MIN), shipped(order_id, at + HOUR),
            delivered(order_id, at + DAY)]


# --- caps -------------------------------------------------------------------------------------------------------------

def test_300_events_for_an_order_that_never_appears_stay_small_and_are_all_dead_lettered():
    """The case that once made one value 2.3 MB: 300 contract-valid events held for an unknown id."""
    events = [update("ghost", T0 + n * 1000) for n in range(300)]
    book = OrderBook({}, POLICY)
    held_sizes = []
    for n, e in enumerate(events):
        book.apply(e, e["event_time"])
        held_sizes.append(encoded_size(book.orders["ghost"]))
    assert len(book.orders["ghost"]["early"]) == LIMITS.held_events
    assert max(held_sizes) < LIMITS.order_bytes
    outputs, book = run(events, until=T0 + 2 * HOUR)
    letters = dead_letters(outputs)
    over = [o for o in letters if "held already" in o["reason"]]
    assert len(over) == 300 - LIMITS.held_events
    assert over[0]["reason"] == f"{LIMITS.held_events} events are held already for order ghost, which has not been created"
    assert sum("never appeared" in o["reason"] for o in letters) == LIMITS.held_events
    assert "ghost" not in book.orders
    assert book.tally["in"] == book.tally["dead_lettered"] == 300 and reconciles(book.tally)


def test_a_redelivered_copy_of_an_event_refused_by_a_cap_is_a_duplicate():
    events = [update("ghost", T0 + n) for n in range(LIMITS.held_events + 1)]
    outputs, book = run([*events, events[-1]], until=T0 + MIN)
    assert len(dead_letters(outputs)) == 1
    assert book.tally["duplicates"] == 1 and reconciles(book.tally)


def test_tracking_updates_beyond_the_cap_are_dead_lettered_and_the_order_goes_on():
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, tracking_updates=5))
    scans = [update("o", T0 + HOUR + n * MIN) for n in range(1, 8)]
    events = [created("o"), paid("o", T0 + MIN), shipped("o", T0 + HOUR), *scans, delivered("o", T0 + DAY)]
    outputs, book = run(events, until=T0 + DAY + HOUR, policy=policy)
    order = book.orders["o"]
    assert order["status"] == "DELIVERED"  # a delivery is not a scan: it still counts
    assert len(order["tracking"]) == 6  # SHIPPED + 4 scans, then DELIVERED past the cap
    letters = dead_letters(outputs)
    assert [o["event"]["event_id"] for o in letters] == [e["event_id"] for e in scans[4:]]
    assert letters[0]["reason"] == "the order's tracking holds its limit of 5 entries already"
    assert reconciles(book.tally)


def test_after_sales_cases_beyond_the_cap_are_dead_lettered():
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, after_sales_cases=2))
    cases = []
    for n in range(3):
        # Repairs: a return or refund resolved as approved counts its lines refunded, and no case opens on them again.
        cases += [after_sales("o", T0 + 2 * DAY + n * HOUR, "REPAIR"),
                  after_sales_resolved("o", T0 + 2 * DAY + n * HOUR + MIN)]
    outputs, book = run([*delivered_order("o"), *cases], until=T0 + 3 * DAY, policy=policy)
    assert len(book.orders["o"]["after_sales"]) == 2
    letters = dead_letters(outputs)
    assert letters[0]["reason"] == "the order's after_sales holds its limit of 2 entries already"
    assert "no after-sales case is open" in letters[1]["reason"]  # the resolution of the refused case


def test_an_order_takes_a_bounded_number_of_events():
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, events=6))
    scans = [update("o", T0 + HOUR + n * MIN) for n in range(1, 5)]
    outputs, book = run([created("o"), paid("o", T0 + MIN), shipped("o", T0 + HOUR), *scans], until=T0 + 2 * HOUR,
                        policy=policy)
    assert len(book.orders["o"]["seen"]) == 6
    assert [o["reason"] for o in dead_letters(outputs)] == ["order o has taken its limit of 6 events"]


def test_an_event_that_would_make_the_order_too_large_is_dead_lettered_and_the_order_stays_as_it_was():
    events = [*delivered_order("o")[:3], update("o", T0 + 90 * MIN, "COLLECTED")]  # in transit now
    _, created_only = run(events[:1], until=T0 + MIN)
    _, book = run(events, until=T0 + 2 * HOUR)
    size = encoded_size(book.orders["o"])
    limit = max(2 * encoded_size(created_only.orders["o"]), size + 300)  # a creation needs room to grow
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=limit))
    big = {**update("o", T0 + 2 * HOUR), "description": "x" * (limit - size)}
    small = update("o", T0 + 3 * HOUR)
    outputs, book = run([*events, big, small], until=T0 + 4 * HOUR, policy=policy)
    order = book.orders["o"]
    [letter] = dead_letters(outputs)
    assert letter["reason"].startswith("the order would take ")
    assert letter["reason"].endswith(f"bytes, over the limit of {limit}")
    assert [t["at"] for t in order["tracking"]] == [T0 + HOUR, T0 + 90 * MIN, T0 + 3 * HOUR]  # the small scan went on
    assert encoded_size(order) <= limit


def test_an_order_at_its_size_limit_can_still_be_delivered_and_completed():
    """Steps that move the order on are never refused for size or count: it would be stuck otherwise."""
    events = [*delivered_order("o")[:3], update("o", T0 + 90 * MIN, "COLLECTED")]
    _, book = run(events, until=T0 + 2 * HOUR)
    limit = 2 * encoded_size(book.orders["o"])
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=limit, events=4))
    fill = {**update("o", T0 + 2 * HOUR), "description": "x" * (limit // 3)}
    outputs, book = run([*events, fill, delivered("o", T0 + DAY), confirmed("o", T0 + 2 * DAY)],
                        until=T0 + 3 * DAY, policy=policy)
    assert book.orders["o"]["status"] == "COMPLETED"
    assert [o["reason"] for o in dead_letters(outputs)] == ["order o has taken its limit of 4 events"]


def test_a_creation_without_room_to_grow_is_dead_lettered_whatever_was_held_before_it():
    creation = created("o", line_items=[{"sku_id": f"sku-{n}", "product_name": "x" * 200, "quantity": 1,
                                         "unit_price": "1.00"} for n in range(40)])
    _, alone = run([creation], until=T0 + MIN)
    size = encoded_size(alone.orders["o"])
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=2 * size + 200))
    held = [{**update("o", T0 - 10 * MIN + n), "description": "y" * (size // 10)} for n in range(5)]
    for events in ([creation], [*held, creation]):  # held events do not count against the creation
        _, book = run(events, until=T0 + MIN, policy=policy)
        assert book.orders["o"]["status"] == "UNPAID"
    tight = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=2 * size - 2))
    outputs, book = run([creation], until=T0 + MIN, policy=tight)
    assert "o" not in book.orders
    assert dead_letters(outputs)[0]["reason"] == (f"the order would take {size} bytes when created, over half the "
                                                  f"limit of {2 * size - 2} (the room it needs to grow)")


def test_held_events_too_large_together_are_dead_lettered():
    policy = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=2000))
    scans = [{**update("ghost", T0 + n), "description": "y" * 300} for n in range(10)]
    outputs, book = run(scans, until=T0 + MIN, policy=policy)
    refused = [o for o in dead_letters(outputs) if "would take" in o["reason"]]
    assert refused and refused[0]["reason"].startswith("holding it for order ghost (not created yet) would take ")
    assert encoded_size(book.orders["ghost"]) <= 2000
    assert reconciles(book.tally)


def test_redelivered_copies_of_applied_events_stay_duplicates_after_many_rejections():
    """Applied ids are all kept; rejected ones within the last `rejected_ids`."""
    events = delivered_order("o")
    refused = [paid("o", T0 + 2 * DAY + n) for n in range(LIMITS.rejected_ids + 10)]  # not allowed when delivered
    copies = [dict(e) for e in events] + [dict(refused[-1])]
    outputs, book = run([*events, *refused, *copies], until=T0 + 3 * DAY)
    assert book.tally["duplicates"] == len(copies)
    assert len(book.orders["o"]["rejected"]) == LIMITS.rejected_ids
    assert reconciles(book.tally)


# --- retention --------------------------------------------------------------------------------------------------------

def test_a_cancelled_order_is_forgotten_when_its_retention_ends():
    events = [created("o"), created("open", T0 + 80 * DAY)]
    cancelled_at = T0 + 48 * HOUR
    _, before = run(events, until=cancelled_at + RETENTION - 1)
    assert before.orders["o"]["status"] == "CANCELLED"
    _, after = run(events, until=cancelled_at + RETENTION)
    assert "o" not in after.orders and after.orders["open"]["status"] == "CANCELLED"


def test_a_completed_order_is_kept_through_its_after_sales_window_then_its_retention():
    events = [*delivered_order("o"), confirmed("o", T0 + 2 * DAY)]
    completed_at = T0 + 2 * DAY
    _, kept = run(events, until=completed_at + AFTER_SALES + RETENTION - 1)
    assert kept.orders["o"]["status"] == "COMPLETED"
    _, gone = run(events, until=completed_at + AFTER_SALES + RETENTION)
    assert "o" not in gone.orders


def test_activity_after_completion_extends_the_retention():
    events = [*delivered_order("o"), confirmed("o", T0 + 2 * DAY), review("o", T0 + 10 * DAY)]
    _, book = run(events, until=T0 + 2 * DAY + AFTER_SALES + RETENTION)
    assert book.orders["o"]["deadlines"] == {"FORGET": T0 + 10 * DAY + AFTER_SALES + RETENTION}


def test_an_order_with_an_open_after_sales_case_is_not_forgotten():
    # A repair stays open once approved (automatically, 48 h after it was asked for: the order's last
    # change, from which its retention runs) until it is resolved.
    events = [*delivered_order("o"), confirmed("o", T0 + 2 * DAY), after_sales("o", T0 + 3 * DAY, "REPAIR")]
    due = T0 + 5 * DAY + AFTER_SALES + RETENTION
    _, book = run(events, until=due + DAY)
    assert book.orders["o"]["conditions"].get("AFTER_SALES_OPEN")
    assert book.orders["o"]["deadlines"] == {"FORGET": due + AFTER_SALES + RETENTION}


def test_a_late_copy_of_a_forgotten_orders_creation_does_not_start_a_new_order():
    events = [created("o"), created("later", T0 + 100 * DAY)]
    copy = dict(events[0])
    outputs, book = run([*events, copy], until=T0 + 101 * DAY)
    assert "o" not in book.orders
    [letter] = dead_letters(outputs)
    assert letter["reason"] == ("order o is not known and the event is older than the retention period (90 days): "
                                "its order may have been forgotten")
    assert reconciles(book.tally)


def test_a_fresh_event_for_a_forgotten_order_is_held_then_dead_lettered_as_unknown():
    cancelled_at = T0 + 48 * HOUR
    late = update("o", cancelled_at + RETENTION + DAY)
    outputs, book = run([created("o"), late], until=late["event_time"] + 2 * HOUR)
    assert "o" not in book.orders
    [letter] = dead_letters(outputs)
    assert "never appeared" in letter["reason"] and "forgotten when its retention period ended" in letter["reason"]


def test_forgetting_a_paid_order_deletes_its_lines_closed_stock_holds():
    events = [*delivered_order("o"), confirmed("o", T0 + 2 * DAY)]
    forgotten_at = T0 + 2 * DAY + AFTER_SALES + RETENTION
    stock = {}
    list(replay((Line(n, e) for n, e in enumerate(events, 1)), forgotten_at - 1, POLICY,
                                 OrderBook({}, POLICY), StockRoom(stock)))
    assert stock == {"hold|sku-1|o|0": {"quantity": 2, "reserved": True, "counted": False, "available": None,
                                        "closed": "CONSUME"}}
    book = OrderBook({}, POLICY)
    requests = [r for e in events for r in book.apply(e, e["event_time"]) if r["output"] == "stock_request"]
    requests += [r for r in book.fire_due(forgotten_at) if r["output"] == "stock_request"]
    assert [r["action"] for r in requests] == ["RESERVE", "CONSUME", "FORGET"]
    assert requests[-1]["at"] == forgotten_at
    room = StockRoom(stock)
    room.handle(requests[-1])
    assert stock == {}


def test_forget_of_a_hold_still_open_releases_its_units_first():
    stock = {}
    room = StockRoom(stock)
    room.apply(stock_set("sku-1", T0, 5))
    request = {"action": "RESERVE", "order_id": "o", "line": 0, "sku_id": "sku-1", "quantity": 2,
               "unit_price": "9.99", "currency": "GBP", "ordered_at": T0, "at": T0}
    room.handle(request)
    assert stock["sku|sku-1"]["held"] == 2
    room.handle({**request, "action": "FORGET"})
    assert stock["sku|sku-1"]["held"] == 0 and stock["sku|sku-1"]["on_hand"] == 5
    assert "hold|sku-1|o|0" not in stock


def test_a_forgotten_order_deletes_its_holds_when_an_event_for_its_id_comes_after_its_retention():
    """The order is forgotten by the event's own step, which then holds the event for a new order."""
    events = [*delivered_order("o"), confirmed("o", T0 + 2 * DAY)]
    forgotten_at = T0 + 2 * DAY + AFTER_SALES + RETENTION
    book = OrderBook({}, POLICY)
    for e in events:
        book.apply(e, e["event_time"])
    late = update("o", forgotten_at + HOUR)
    outputs = book.apply(late, late["event_time"])
    assert [r["action"] for r in outputs if r["output"] == "stock_request"] == ["FORGET"]
    assert book.orders["o"]["status"] is None and book.orders["o"]["early"] == [late]


def test_views_say_which_orders_they_cover_per_region_when_retention_differs():
    text = Policy.load().covers()
    assert text.startswith("open orders, and finished ones for 90 days after they finished")
    packaged = PACKAGED_POLICY.read_text()
    shorter = Policy.from_toml(packaged.replace('[regions.GB]\n', '[regions.GB]\nretention = "30d"\n'))
    assert shorter.covers() == (
        "open orders, and in GB: finished ones for 30 days after they finished (completed ones after their 15-day "
        "after-sales window); in ID, MY, PH, SG, TH, VN: finished ones for 90 days after they finished (completed "
        "ones after their 15-day after-sales window)")


def test_events_held_at_the_edge_of_the_retention_period_are_refused_before_they_could_finish_an_order():
    """An event exactly the retention period old is refused at once (not held), so no held event can
    finish an order whose retention would be over when it is released."""
    now = T0 + 200 * DAY
    events = [created("other", now), seller_cancelled("o1", now - RETENTION), review("o1", now - RETENTION + 1),
              created("o1", now - DAY)]
    outputs, book = run(events, until=now + MIN)
    assert book.orders["o1"]["status"] == "UNPAID"
    assert dead_letters(outputs)[0]["reason"].startswith("order o1 is not known and the event is older than")
    assert reconciles(book.tally) and book.tally["buffered"] == 0


def test_late_copies_of_a_forgotten_orders_events_do_not_start_it_again_even_with_event_times_out_of_order():
    """Paid and cancelled at its creation time: the copies come exactly when it is forgotten."""
    stock = {}
    cr, pd = created("o1", T0), paid("o1", T0)
    events = [stock_set("sku-1", T0 - DAY, 10), cr, pd, seller_cancelled("o1", T0), created("tick", T0 + RETENTION),
              dict(cr), dict(pd)]
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), T0 + RETENTION + MIN, POLICY,
                          book := OrderBook({}, POLICY), StockRoom(stock)))
    assert "o1" not in book.orders and stock["sku|sku-1"]["held"] == 0 and "hold|sku-1|o1|0" not in stock
    letters = [o["reason"] for o in dead_letters(outputs) if o["order_id"] == "o1"]
    assert len(letters) == 2 and all("older than the retention period" in reason for reason in letters)
    changes = [o["to_status"] for o in outputs if o["output"] == "status_change" and o["order_id"] == "o1"]
    assert changes == ["UNPAID", "AWAITING_SHIPMENT", "CANCELLED"]
    ids = [o["output_id"] for o in outputs]
    assert len(ids) == len(set(ids))


def test_a_stock_problem_for_an_order_at_its_size_limit_keeps_only_the_line_in_the_condition():
    book = OrderBook({}, POLICY)
    for e in (created("o"), paid("o", T0 + MIN)):
        book.apply(e, e["event_time"])
    order = book.orders["o"]
    reply = {"problem": "OUT_OF_STOCK", "order_id": "o", "sku_id": "sku-1", "line": 0, "at": T0 + MIN,
             "quantity": 2, "available": 1, "unit_price": "9.99", "catalogue_price": None, "currency": "GBP"}
    roomy = answer(order, reply, POLICY)
    assert roomy.order["conditions"]["OUT_OF_STOCK"]["lines"]["0"] == {"sku_id": "sku-1", "quantity": 2, "available": 1}
    tight = dataclasses.replace(POLICY, limits=dataclasses.replace(LIMITS, order_bytes=encoded_size(order) + 20))
    step = answer(order, reply, tight)
    assert step.order["conditions"]["OUT_OF_STOCK"]["lines"] == {"0": {}}
    assert step.outputs[0]["detail"] == roomy.outputs[0]["detail"]  # the alert says it all


def test_a_finished_order_stored_before_retention_came_in_gets_its_retention_when_indexed():
    _, book = run([created("old")], until=T0 + 3 * DAY)
    stored = {k: v for k, v in book.orders["old"].items() if k != "rejected"}  # as the previous version kept it
    stored["deadlines"] = {}
    upgraded = OrderBook({}, POLICY)
    assert upgraded.index_orders([("old", stored)]) == 1
    cancelled_at = T0 + 48 * HOUR
    assert upgraded.orders["old"]["deadlines"] == {"FORGET": cancelled_at + RETENTION}
    upgraded.fire_due(cancelled_at + RETENTION)
    assert "old" not in upgraded.orders
