"""Order confirmation (stock and price) through the replay: the same core the worker runs.

Paid orders reserve their units per SKU, cancelled ones release them, shipped
ones consume them; a line that cannot be reserved raises OUT_OF_STOCK, a line
priced off the catalogue of its order time raises PRICE_MISMATCH; both open a
condition on the order until it ships or is cancelled.
"""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as some

from orderflow.streams.api.order_query import detail
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.book.replay import Line, replay
from orderflow.streams.lifecycle import Policy
from orderflow.streams.stock.room import StockRoom
from support.orders import (DAY, HOUR, MIN, T0, cancel_request, cancel_response, ordered, paid, price_changed,
                            seller_cancelled, shipped, stock_adjusted, stock_set)

POLICY = Policy.load(None)


def run(events, until=T0 + 2 * HOUR, room=None):
    book, room = OrderBook({}, POLICY), room if room is not None else StockRoom({})
    outputs = list(replay((Line(n, e) for n, e in enumerate(events, 1)), until, POLICY, book, room))
    return outputs, book, room


def alerts(outputs, kind):
    return [(o["order_id"], o["detail"]) for o in outputs if o["output"] == "alert" and o["kind"] == kind]


def open_holds(room):
    return {key: hold for key, hold in room.store.items() if key.startswith("hold|") and not hold.get("closed")}


class RecordingRoom(StockRoom):
    """Keeps every request with its answers, to hand them to the room again."""
    def __init__(self):
        super().__init__({})
        self.handled = []

    def handle(self, request):
        answers = super().handle(request)
        self.handled.append((request, answers))
        return answers


def sku(room, sku_id):
    state = room.store[f"sku|{sku_id}"]
    return state["on_hand"], state["held"]


def test_paid_orders_reserve_cancelled_ones_release_shipped_ones_consume():
    events = [stock_set("sku-a", T0, 10),
              ordered("c-1", "sku-a", 3, T0 + MIN), paid("c-1", T0 + 2 * MIN),
              ordered("c-2", "sku-a", 2, T0 + 3 * MIN), paid("c-2", T0 + 4 * MIN)]
    _, _, room = run(events)
    assert sku(room, "sku-a") == (10, 5)
    _, _, room = run(events + [seller_cancelled("c-1", T0 + 5 * MIN)])
    assert sku(room, "sku-a") == (10, 2)
    outputs, book, room = run(events + [seller_cancelled("c-1", T0 + 5 * MIN), shipped("c-2", T0 + 6 * MIN)])
    assert sku(room, "sku-a") == (8, 0)
    assert not open_holds(room)
    assert {key: hold["closed"] for key, hold in room.store.items() if key.startswith("hold|")} == {
        "hold|sku-a|c-1|0": "RELEASE", "hold|sku-a|c-2|0": "CONSUME"}
    assert not alerts(outputs, "OUT_OF_STOCK") and not alerts(outputs, "PRICE_MISMATCH")


def test_an_unpaid_order_reserves_nothing_and_its_cancel_releases_nothing():
    _, _, room = run([stock_set("sku-a", T0, 1), ordered("u-1", "sku-a", 1, T0 + MIN),
                      seller_cancelled("u-1", T0 + 2 * MIN)])
    assert sku(room, "sku-a") == (1, 0)


def test_two_orders_race_for_the_last_unit_and_exactly_one_gets_it():
    events = [stock_set("sku-last", T0, 1),
              ordered("r-1", "sku-last", 1, T0 + MIN), ordered("r-2", "sku-last", 1, T0 + MIN),
              paid("r-2", T0 + 2 * MIN), paid("r-1", T0 + 2 * MIN)]
    outputs, book, room = run(events)
    assert [order for order, _ in alerts(outputs, "OUT_OF_STOCK")] == ["r-1"]  # r-2 paid first
    assert alerts(outputs, "OUT_OF_STOCK")[0][1] == {"sku_id": "sku-last", "line": "0", "quantity": "1",
                                                     "available": "0"}
    assert sku(room, "sku-last") == (1, 1)
    # The seller sees the open condition on the order that lacks stock, not on the other.
    view = detail(book.orders["r-1"])
    assert view["conditions"]["OUT_OF_STOCK"] == {"lines": {"0": {"sku_id": "sku-last", "quantity": 1, "available": 0}}}
    assert "OUT_OF_STOCK" not in detail(book.orders["r-2"])["conditions"]


def test_duplicated_events_reserve_nothing_twice_and_raise_nothing_twice():
    events = [stock_set("sku-last", T0, 1), ordered("d-1", "sku-last", 1, T0 + MIN), paid("d-1", T0 + 2 * MIN),
              ordered("d-2", "sku-last", 1, T0 + 3 * MIN), paid("d-2", T0 + 4 * MIN)]
    again = events + [dict(e) for e in events]
    once, _, room_once = run(events)
    twice, _, room_twice = run(again)
    assert len(alerts(twice, "OUT_OF_STOCK")) == 1 and room_twice.store == room_once.store
    assert [o["output_id"] for o in twice] == [o["output_id"] for o in once]


def test_a_request_handled_twice_is_answered_the_same_and_holds_once():
    room = StockRoom({})
    room.apply(stock_set("sku-x", T0, 1))
    request = {"action": "RESERVE", "order_id": "o-1", "line": 0, "sku_id": "sku-x", "quantity": 2,
               "unit_price": "1.00", "currency": "GBP", "ordered_at": T0, "at": T0}
    first = room.handle(request)
    assert [a["problem"] for a in first] == ["OUT_OF_STOCK"]
    assert room.handle(request) == first and sku(room, "sku-x") == (1, 0)
    room.handle({**request, "action": "RELEASE"})
    room.handle({**request, "action": "RELEASE"})
    assert sku(room, "sku-x") == (1, 0) and not open_holds(room)
    # Handled again after the release (a takeover reads from the last committed offset): nothing is held.
    assert room.handle(request) == first and sku(room, "sku-x") == (1, 0) and not open_holds(room)


def test_a_line_priced_off_the_catalogue_of_its_order_time_raises_price_mismatch():
    events = [stock_set("sku-p", T0, 100), price_changed("sku-p", T0, "9.99"),
              ordered("p-old", "sku-p", 1, T0 + MIN, "9.99"),                # the price of its time
              price_changed("sku-p", T0 + 2 * MIN, "12.00"),
              ordered("p-stale", "sku-p", 1, T0 + 3 * MIN, "9.99"),          # placed after the change
              ordered("p-sgd", "sku-p", 1, T0 + 3 * MIN, "9.99"),
              paid("p-old", T0 + 4 * MIN), paid("p-stale", T0 + 4 * MIN)]
    outputs, book, _ = run(events)
    assert alerts(outputs, "PRICE_MISMATCH") == [("p-stale", {"sku_id": "sku-p", "line": "0", "unit_price": "9.99",
                                                               "catalogue_price": "12.00", "currency": "GBP"})]
    assert "PRICE_MISMATCH" in detail(book.orders["p-stale"])["conditions"]
    assert not detail(book.orders["p-old"])["conditions"]


def test_a_price_in_another_currency_or_an_untracked_sku_raises_nothing():
    events = [price_changed("sku-q", T0, "15.00", currency="SGD"),
              ordered("q-1", "sku-q", 5, T0 + MIN, "9.99"), paid("q-1", T0 + 2 * MIN)]
    outputs, _, room = run(events)
    assert not [o for o in outputs if o["output"] == "alert"]
    assert sku(room, "sku-q") == (None, 0)  # never counted: every request is granted


def test_shipping_or_cancelling_closes_the_conditions():
    base = [stock_set("sku-z", T0, 0), ordered("z-1", "sku-z", 1, T0 + MIN), paid("z-1", T0 + 2 * MIN)]
    _, book, _ = run(base)
    assert "OUT_OF_STOCK" in book.orders["z-1"]["conditions"]
    _, book, _ = run(base + [stock_adjusted("sku-z", T0 + HOUR, 5), shipped("z-1", T0 + HOUR + MIN)])
    assert not book.orders["z-1"]["conditions"]
    _, book, room = run(base + [cancel_request("z-1", T0 + 3 * MIN), cancel_response("z-1", T0 + 4 * MIN, "ACCEPT")])
    assert book.orders["z-1"]["status"] == "CANCELLED" and not book.orders["z-1"]["conditions"]
    assert not open_holds(room)


def test_the_alert_is_raised_when_the_answer_comes_after_the_order_moved_on_but_no_condition_opens():
    """Live, the warehouse answers later: the order may be cancelled first. The alert is the same,
    and the order ends as it does when the answer comes at once."""
    book = OrderBook({}, POLICY)
    book.apply(ordered("l-1", "sku-l", 1, T0), T0)
    requests = [o for o in book.apply(paid("l-1", T0 + MIN), T0 + MIN) if o["output"] == "stock_request"]
    book.apply(seller_cancelled("l-1", T0 + 2 * MIN), T0 + 2 * MIN)
    room = StockRoom({})
    room.apply(stock_set("sku-l", T0 - MIN, 0))
    late = [o for reply in room.handle(requests[0]) for o in book.answer(reply)]
    assert [o["kind"] for o in late] == ["OUT_OF_STOCK"] and not book.orders["l-1"]["conditions"]
    replayed, _, _ = run([stock_set("sku-l", T0 - MIN, 0), ordered("l-1", "sku-l", 1, T0), paid("l-1", T0 + MIN),
                          seller_cancelled("l-1", T0 + 2 * MIN)])
    assert [o["output_id"] for o in replayed if o["output"] == "alert"] == [late[0]["output_id"]]


def test_bad_warehouse_events_are_dead_lettered_with_their_reason_and_change_nothing():
    events = [stock_set("sku-b", T0, 2), stock_adjusted("sku-b", T0 + MIN, -3), stock_set("sku-b", T0 + MIN, -1),
              stock_adjusted("sku-b", T0 + MIN, 0), price_changed("sku-b", T0 + MIN, "free"),
              {**stock_set("", T0, 1)}]
    outputs, _, room = run(events)
    reasons = [o["reason"] for o in outputs if o["output"] == "dead_letter"]
    assert reasons == ["STOCK_ADJUSTED by -3 would leave -1 units of sku-b on hand",
                       "quantity must not be negative, not -1", "delta must not be 0",
                       "unit_price not a decimal amount: 'free'", "missing envelope field sku_id"]
    assert sku(room, "sku-b") == (2, 0)
    assert room.tally["in"] == room.tally["applied"] + room.tally["dead_lettered"] + room.tally["duplicates"] == 6


@settings(max_examples=60, deadline=None)
@given(stock=some.integers(0, 6), seed=some.integers(0, 10**6), orders=some.integers(1, 12))
def test_nothing_is_oversold_whatever_the_order_of_payments_cancels_shipments_and_copies(stock, seed, orders):
    rng = random.Random(seed)
    events = [stock_set("sku-h", T0, stock)]
    for n in range(orders):
        order_id = f"h-{n}"
        events.append(ordered(order_id, "sku-h", rng.randint(1, 3), T0 + n))
        if rng.random() < 0.8:
            events.append(paid(order_id, T0 + HOUR + rng.randrange(HOUR)))
            fate = rng.random()
            if fate < 0.3:
                events.append(seller_cancelled(order_id, T0 + 2 * HOUR + rng.randrange(HOUR)))
            elif fate < 0.6:
                events.append(shipped(order_id, T0 + 2 * HOUR + rng.randrange(HOUR)))
    events = [events[0]] + sorted(events[1:], key=lambda e: e["event_time"])
    events += [dict(e) for e in rng.sample(events, k=len(events) // 3)]  # redelivered copies
    room = RecordingRoom()
    outputs, book, _ = run(events, until=T0 + DAY, room=room)
    on_hand, held = sku(room, "sku-h")
    holds = open_holds(room)
    # Units held equal the reserved lines still open, and never exceed what is on hand.
    assert held == sum(h["quantity"] for h in holds.values() if h["counted"]) <= on_hand
    shipped_units = stock - on_hand
    assert shipped_units >= 0
    # Every open hold belongs to a paid order still waiting to ship; every short line raised one alert.
    for key in holds:
        assert book.orders[key.split("|")[2]]["status"] == "AWAITING_SHIPMENT"
    short = alerts(outputs, "OUT_OF_STOCK")
    assert len(short) == len(set(order for order, _ in short)) == room.tally["short"]
    # A worker taking the partition over handles the requests again from an earlier offset: same answers,
    # same store (a RESERVE seen again after its line shipped or was released holds nothing).
    store, handled = dict(room.store), list(room.handled)
    for request, answers in handled[rng.randrange(len(handled) + 1):]:
        assert room.handle(request) == answers
    assert room.store == store
