"""The urgency views of the order API (streams/api/urgency.py) over orders the core made, at their
exact boundaries, judged at a pinned `now`; the ship-by sort before and after the ship-by fired."""
from __future__ import annotations

import pytest

from orderflow.streams.api.order_query import Filters, Query, QueryError
from orderflow.streams.book.order_book import OrderBook
from orderflow.streams.lifecycle import Policy
from support.orders import (DAY, HOUR, T0, after_sales, cancel_request, case_response, created, delivered, failed,
                            paid, redelivery, return_received, return_shipped, shipped, update)


def book_of(*stories: list[dict], until: int) -> dict[str, dict]:
    """The orders after applying the events in time order and firing what is due up to `until`."""
    book = OrderBook({}, Policy.load())
    for event in sorted((e for story in stories for e in story), key=lambda e: e["event_time"]):
        book.fire_due(event["event_time"])
        book.apply(event, event["event_time"])
    book.fire_due(until)
    return book.orders


def in_view(orders: dict, now: int, **params) -> list[str]:
    filters = Filters.parse({key: str(value) for key, value in params.items()}, now)
    return sorted(order_id for order_id, order in orders.items() if filters.accepts(order))


def test_ship_within_24h_and_overdue_meet_at_the_ship_by_time():
    orders = book_of([created("ship", T0), paid("ship", T0 + HOUR)], until=T0 + HOUR)
    ship_by = orders["ship"]["deadlines"]["SHIP_BY"]
    assert ship_by == T0 + HOUR + 72 * HOUR
    for now, within, overdue in ((ship_by - DAY - 1, [], []), (ship_by - DAY, ["ship"], []),
                                 (ship_by - 1, ["ship"], []), (ship_by, [], ["ship"])):
        assert in_view(orders, now, due="ship_within_24h") == within, now - ship_by
        assert in_view(orders, now, due="overdue") == overdue, now - ship_by


def test_an_order_stays_overdue_after_its_ship_by_fired_and_sorts_by_that_time():
    late = book_of([created("late", T0), paid("late", T0)], until=T0 + 80 * HOUR)
    assert "SHIP_BY" not in late["late"]["deadlines"] and "LATE_DISPATCH" in late["late"]["conditions"]
    soon = book_of([created("soon", T0 + 20 * HOUR), paid("soon", T0 + 20 * HOUR)], until=T0 + 80 * HOUR)
    orders = {**late, **soon}
    assert in_view(orders, T0 + 80 * HOUR, due="overdue") == ["late"]
    assert in_view(orders, T0 + 80 * HOUR, due="ship_within_24h") == ["soon"]
    query = Query.parse({"sort": "ship_by"}, T0 + 80 * HOUR)
    assert [o["order_id"] for o in sorted(orders.values(), key=query.key)] == ["late", "soon"]
    shipped_orders = book_of([created("gone", T0), paid("gone", T0), shipped("gone", T0 + HOUR)], until=T0 + DAY)
    assert in_view(shipped_orders, T0 + 80 * HOUR, due="overdue") == []  # shipped: nothing to ship


def test_auto_cancel_within_24h_is_the_payment_window_or_the_seller_s_answer_running_out():
    orders = book_of([created("unpaid", T0)],
                     [created("asked", T0), paid("asked", T0), cancel_request("asked", T0 + 10 * HOUR)],
                     [created("calm", T0), paid("calm", T0)], until=T0 + 10 * HOUR)
    timeout = orders["unpaid"]["deadlines"]["UNPAID_TIMEOUT"]  # 48 h after creation
    answer_by = orders["asked"]["deadlines"]["CANCEL_REQUEST_TIMEOUT"]  # 48 h after the request
    assert (timeout, answer_by) == (T0 + 2 * DAY, T0 + 10 * HOUR + 2 * DAY)
    assert in_view(orders, timeout - DAY - 1, due="auto_cancel_within_24h") == []
    assert in_view(orders, timeout - DAY, due="auto_cancel_within_24h") == ["unpaid"]
    assert in_view(orders, answer_by - DAY, due="auto_cancel_within_24h") == ["asked", "unpaid"]
    # Several views: any of them.
    assert in_view(orders, answer_by - DAY, due="auto_cancel_within_24h,overdue") == ["asked", "unpaid"]


def test_action_needed_is_a_condition_waiting_for_the_seller():
    orders = book_of([created("asked", T0), paid("asked", T0), cancel_request("asked", T0 + HOUR)],
                     [created("fine", T0), paid("fine", T0)],
                     [created("failed", T0), paid("failed", T0), shipped("failed", T0 + HOUR),
                      update("failed", T0 + 2 * HOUR), failed("failed", T0 + DAY)],
                     [created("asked-again", T0), paid("asked-again", T0), shipped("asked-again", T0 + HOUR),
                      update("asked-again", T0 + 2 * HOUR), failed("asked-again", T0 + DAY),
                      redelivery("asked-again", T0 + DAY + HOUR)],
                     [created("done", T0), paid("done", T0), shipped("done", T0 + HOUR),
                      delivered("done", T0 + DAY)], until=T0 + 2 * DAY)
    assert in_view(orders, T0 + 2 * DAY, action_needed=1) == ["asked", "failed"]


def test_an_after_sales_case_needs_action_while_it_is_the_seller_s_turn():
    """Asked (an answer is due), a refund or a replacement due: the seller's turn. An approved return
    waits for the buyer, a return on its way for the carrier, a closed case for nobody."""
    def case(order_id, kind, *steps):
        return [created(order_id, T0), paid(order_id, T0), shipped(order_id, T0 + HOUR),
                delivered(order_id, T0 + DAY), after_sales(order_id, T0 + DAY + HOUR, kind, case_id="c"),
                *[step(order_id, T0 + DAY + (n + 2) * HOUR, "c") for n, step in enumerate(steps)]]
    orders = book_of(case("asked", "RETURN"), case("approved-return", "RETURN", case_response),
                     case("on-its-way", "RETURN", case_response, return_shipped),
                     case("received", "RETURN", case_response, return_shipped, return_received),
                     case("refund-due", "REFUND", case_response), case("repair-due", "REPAIR", case_response),
                     case("rejected", "REFUND", lambda o, at, c: case_response(o, at, c, "REJECT")),
                     until=T0 + DAY + 10 * HOUR)
    assert in_view(orders, T0 + DAY + 10 * HOUR, action_needed=1) == ["asked", "received", "refund-due",
                                                                       "repair-due"]


def test_the_urgency_views_need_the_time_they_are_judged_at_and_a_known_name():
    with pytest.raises(QueryError, match="due: needs the time"):
        Filters.parse({"due": "overdue"})
    with pytest.raises(QueryError, match="due: unknown value"):
        Filters.parse({"due": "tomorrow"}, T0)
    # The time moves on between pages: a cursor made at one time resumes at the next.
    first = Query.parse({"due": "overdue", "sort": "ship_by", "limit": "1"}, T0)
    cursor = first.cursor({"order_id": "a", "status": "AWAITING_SHIPMENT", "deadlines": {"SHIP_BY": T0 - 1}})
    assert Query.parse({"due": "overdue", "sort": "ship_by", "cursor": cursor}, T0 + HOUR).after is not None
