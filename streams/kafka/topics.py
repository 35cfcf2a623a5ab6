"""The topic registry: every topic orderflow reads or writes, with its Avro schema.

This is the one place that pairs a topic name with its contract; producers,
consumers, the CLI and the topic creator all look topics up here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str  # Avro record name; its versions live in schemas/<schema>.v<N>.avsc
    doc: str
    internal: bool = False  # written and read by orderflow only
    configs: tuple[tuple[str, str], ...] = ()  # topic configs set when orderflow creates the topic


ORDER_EVENTS = TopicSpec(
    "order-events", "OrderEvent",
    "Upstream order and logistics events, keyed by order_id (the contract table of DOMAIN.md).",
)
INVENTORY_EVENTS = TopicSpec(
    "inventory-events", "InventoryEvent",
    "Warehouse stock counts and adjustments, and catalogue price changes, keyed by sku_id.",
)
STATUS_CHANGES = TopicSpec(
    "order-status-changes", "StatusChange", "Every status change of an order, keyed by order_id.",
)
REMINDERS = TopicSpec(
    "order-reminders", "OrderNotice", "Reminders to the buyer (payment reminders), keyed by order_id.",
)
ALERTS = TopicSpec(
    "order-alerts", "OrderNotice", "Alerts that ask the seller or the platform to act, keyed by order_id.",
)
AFTER_SALES = TopicSpec(
    "order-after-sales", "CaseUpdate",
    "Every transition of an after-sales case (for customer service and finance), keyed by order_id.",
)
ANALYTICS = TopicSpec(
    "order-analytics", "AnalyticsMetric", "Windowed order statistics by region and shop.",
)
DEAD_LETTERS = TopicSpec(
    "order-dead-letters", "DeadLetter", "Rejected input with its reason and the original payload.",
    # A dead letter carries the rejected message whole: up to the producer's 2 MiB request limit.
    configs=(("max.message.bytes", str(2 * 1024 * 1024)),),
)
ANALYTICS_FACTS = TopicSpec(
    "orderflow-analytics-facts", "AnalyticsFacts",
    "What orders did, for the analytics windows: one message per row and batch, keyed by region|shop_id.",
    internal=True,
)
STOCK_REQUESTS = TopicSpec(
    "orderflow-stock-requests", "StockRequest",
    "Order lines reserving, releasing or consuming units, keyed by sku_id (co-partitioned with inventory-events).",
    internal=True,
)
STOCK_REPLIES = TopicSpec(
    "orderflow-stock-replies", "StockReply",
    "Problems the warehouse found with order lines, keyed by order_id (co-partitioned with order-events).",
    internal=True,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ORDER_EVENTS, INVENTORY_EVENTS, STATUS_CHANGES, REMINDERS, ALERTS, AFTER_SALES, ANALYTICS, DEAD_LETTERS,
    ANALYTICS_FACTS, STOCK_REQUESTS, STOCK_REPLIES,
)

# Where each kind of core output is published.
OUTPUT_TOPICS: dict[str, TopicSpec] = {
    "status_change": STATUS_CHANGES,
    "reminder": REMINDERS,
    "alert": ALERTS,
    "dead_letter": DEAD_LETTERS,
    "case_update": AFTER_SALES,
}


def by_name(name: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in ALL_TOPICS)
    raise KeyError(f"unknown topic {name!r}; known topics: {known}")
