"""Order statuses, the seller centre's tabs, and the open conditions beside them."""
from __future__ import annotations

UNPAID = "UNPAID"
ON_HOLD = "ON_HOLD"  # paid, in the buyer's remorse period: not to be shipped yet (region policy)
AWAITING_SHIPMENT = "AWAITING_SHIPMENT"
PARTIALLY_SHIPPING = "PARTIALLY_SHIPPING"  # some lines handed over in packages, others still to ship
AWAITING_COLLECTION = "AWAITING_COLLECTION"  # handed over, not yet scanned in
IN_TRANSIT = "IN_TRANSIT"
DELIVERED = "DELIVERED"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"

STATUSES = (UNPAID, ON_HOLD, AWAITING_SHIPMENT, PARTIALLY_SHIPPING, AWAITING_COLLECTION, IN_TRANSIT, DELIVERED, COMPLETED, CANCELLED)
TERMINAL = frozenset({COMPLETED, CANCELLED})

TABS = {
    "Unpaid": (UNPAID,),
    # An order on hold is paid and will ship: the seller may pick and pack it, not hand it over yet.
    # A partly shipped order still has lines to hand over by its ship-by time: the seller's work.
    "To ship": (ON_HOLD, AWAITING_SHIPMENT, PARTIALLY_SHIPPING),
    "Shipped": (AWAITING_COLLECTION, IN_TRANSIT, DELIVERED),
    "Completed": (COMPLETED,),
    "Cancelled": (CANCELLED,),
}
TAB_OF = {status: tab for tab, statuses in TABS.items() for status in statuses}

# The time each status was first reached is kept under this name on the order (an order on hold
# was paid; it keeps its payment time when the hold ends).
REACHED_AT = {
    UNPAID: "created_at",
    ON_HOLD: "paid_at",
    AWAITING_SHIPMENT: "paid_at",
    PARTIALLY_SHIPPING: "shipped_at",  # the first package's hand-over
    AWAITING_COLLECTION: "shipped_at",
    IN_TRANSIT: "collected_at",
    DELIVERED: "delivered_at",
    COMPLETED: "completed_at",
    CANCELLED: "cancelled_at",
}

# Open conditions: things that need someone's action, shown beside the status.
CANCEL_REQUESTED = "CANCEL_REQUESTED"
LATE_DISPATCH = "LATE_DISPATCH"
DELIVERY_FAILED = "DELIVERY_FAILED"
AFTER_SALES_OPEN = "AFTER_SALES_OPEN"
OUT_OF_STOCK = "OUT_OF_STOCK"  # the warehouse could not reserve every unit of the order
PRICE_MISMATCH = "PRICE_MISMATCH"  # a line's price differs from the catalogue price at order time
# Deadlines of an after-sales case, named KIND:case_id: they outlive the order's completion.
CASE_DEADLINES = ("AFTER_SALES_RESPONSE", "RETURN_SHIP_WINDOW")
CONDITIONS = (LATE_DISPATCH, CANCEL_REQUESTED, DELIVERY_FAILED, AFTER_SALES_OPEN, OUT_OF_STOCK, PRICE_MISMATCH)
