"""A catch-up that brings facts after their windows expired: counted, not logged one line per fact."""
from __future__ import annotations

import logging

from orderflow.streams.analytics.facts import Aggregator, MemoryStore, zones
from orderflow.streams.lifecycle import Policy

T0 = 1_795_132_800_000  # 2026-11-20T00:00:00Z
DAY = 86_400_000


def created(n: int, at: int) -> dict:
    return {"fact_id": f"f-{n}", "kind": "ORDER_CREATED", "at": at, "order_id": f"ord-{n}", "region": "GB",
            "shop_id": "shop-1"}


def test_a_month_of_late_facts_is_counted_and_logs_nothing_per_fact(caplog):
    caplog.set_level(logging.DEBUG)
    aggregator = Aggregator(MemoryStore(), zones(Policy.load()))
    aggregator.add_many([created(0, T0 + 30 * DAY)])  # stream time a month on: every earlier window expired
    late = [created(n, T0 + n * 3_600_000) for n in range(1, 301)]
    assert aggregator.add_many(late) == []
    tally = aggregator.tally
    assert tally["too_late"] == 300 and tally["missed_windows"] == 900
    assert tally["in"] == tally["applied"] + tally["duplicates"] + tally["too_late"] == 301
    assert [r for r in caplog.records if r.name.startswith("orderflow")] == []
