"""A traffic simulator that plays the upstream platforms (store front, payment, warehouse, carriers).

Each order gets a story drawn from a realistic mix: paid at once, paid late or
never; buyers asking to cancel and sellers answering or not; sellers out of
stock; hand-overs on time and late; carrier scans, stalls, failed deliveries
with and without redelivery; confirmations, reviews and after-sales cases.
Some orders of several lines ship in two or three packages (package_id P1,
P2, ...), handed over hours apart, each with its own carrier scans, failures
and delivery: the first plays the story the order would have had in one
package (the same draws, the same event ids), the others come from a
generator of the order's own, so the orders that do not split are the same
events as before split shipments came in.
With `inventory`, the warehouse too: stock counts at the start, daily
restocks (too small for the scarce SKUs, so they run out), catalogue prices
per currency, a price rise half way, and now and then a line at a stale price.
The same seed gives the same traffic. Events come out in event-time order.
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterator

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000

# Region: (currency, price scale, share of orders, city, country)
REGIONS = {
    "GB": ("GBP", Decimal("1"), 0.25, "London", "GB"),
    "ID": ("IDR", Decimal("15000"), 0.2, "Jakarta", "ID"),
    "MY": ("MYR", Decimal("4.5"), 0.1, "Kuala Lumpur", "MY"),
    "PH": ("PHP", Decimal("55"), 0.1, "Manila", "PH"),
    "SG": ("SGD", Decimal("1.3"), 0.1, "Singapore", "SG"),
    "TH": ("THB", Decimal("35"), 0.1, "Bangkok", "TH"),
    "VN": ("VND", Decimal("24000"), 0.15, "Ho Chi Minh City", "VN"),
}
# (sku, product, base price in GBP-ish units, popularity)
CATALOGUE = [
    ("sku-case", "Phone case", "8.99", 30), ("sku-cable", "USB-C cable", "5.49", 25),
    ("sku-lamp", "Desk lamp", "24.00", 8), ("sku-tee", "Cotton tee", "12.50", 20),
    ("sku-serum", "Vitamin C serum", "15.90", 15), ("sku-bottle", "Steel bottle", "11.00", 12),
    ("sku-earbuds", "Wireless earbuds", "39.99", 10), ("sku-mat", "Yoga mat", "19.99", 6),
    ("sku-lipstick", "Matte lipstick", "9.99", 18), ("sku-charger", "Fast charger", "17.49", 9),
]
SCARCE = ("sku-lamp", "sku-mat")  # stocked for half of what sells: stock-outs
PRICE_RISE = ("sku-earbuds", Decimal("1.1"))  # half way through, this SKU's catalogue price goes up
CARRIERS = ["Royal Mail", "J&T Express", "Ninja Van", "SPX Express", "Flash Express"]
CHANNELS = ["VIDEO", "LIVE", "CAMPAIGN", "STORE"]
# Cancel reasons, from the packaged region policy's catalogue (most seller cancels are for stock).
SELLER_REASONS = ["OUT_OF_STOCK"] * 6 + ["PRICE_ERROR", "ADDRESS_UNDELIVERABLE", "BUYER_REQUEST"]
OPERATOR_REASONS = ["FRAUD", "FRAUD", "POLICY_VIOLATION", "PAYMENT_RISK"]
# The packaged region policy's redelivery window: a failed package nobody asks for again is given up after it.
REDELIVERY_WINDOW = 7 * DAY


@dataclass(frozen=True)
class Mix:
    """How orders behave; probabilities of each branch of the story."""
    paid_at_once: float = 0.72
    paid_late: float = 0.10          # within 48 h, after the reminders
    paid_after_cancel: float = 0.03  # after the 48 h auto-cancel
    seller_out_of_stock: float = 0.03
    remorse_cancel: float = 0.02     # the buyer cancels within the hour after paying (at once where held)
    operator_cancel: float = 0.005   # fraud and policy cancels by the platform's operators
    line_cancel: float = 0.04        # of orders with several lines: the seller cancels one, ships the rest
    buyer_cancel_request: float = 0.06
    request_accepted: float = 0.5
    request_rejected: float = 0.3    # the rest are never answered
    shipped_late: float = 0.08
    stalled: float = 0.04
    delivery_failed: float = 0.06
    redelivery_requested: float = 0.7
    redelivery_overdue: float = 0.2
    buyer_confirms: float = 0.6
    review: float = 0.4
    after_sales: float = 0.05
    stale_price: float = 0.01        # a line priced 5% under the catalogue (a stale store front)
    split_shipment: float = 0.08     # of orders with several open lines: shipped in two packages (or three)
    third_package: float = 0.3       # of split orders with three open lines or more: in three packages


class Simulator:
    def __init__(self, seed: int = 1, start: int = 1_795_000_000_000, orders_per_hour: float = 600.0,
                 mix: Mix = Mix(), inventory: bool = False):
        self.seed = seed
        self.rng = random.Random(seed)
        self.start = start
        self.orders_per_hour = orders_per_hour
        self.mix = mix
        self.inventory = inventory
        self._risen = False  # the price rise has happened
        self._ids = itertools.count(1)
        self._regions = list(REGIONS)
        self._region_weights = [REGIONS[r][2] for r in self._regions]
        self._sku_weights = [item[3] for item in CATALOGUE]

    def events(self, orders: int) -> Iterator[dict]:
        """The events of `orders` orders (and the warehouse's, with `inventory`), in event-time order."""
        pending: list[tuple[int, int, dict]] = []
        seq = itertools.count()

        def push(events: list[dict]) -> None:
            for event in events:
                heapq.heappush(pending, (event["event_time"], next(seq), event))

        arrival = self.start
        restock = self.start + DAY
        if self.inventory:
            push(self._stock_take(self.start - MIN))
        for n in range(orders):
            arrival += int(self.rng.expovariate(self.orders_per_hour / HOUR)) + 1
            if self.inventory:
                while restock <= arrival:
                    push(self._restock(restock))
                    restock += DAY
                if not self._risen and n >= orders // 2:
                    self._risen = True
                    push(self._price_rise(arrival - 1))
            while pending and pending[0][0] <= arrival:
                yield heapq.heappop(pending)[2]
            push(self.story(f"ord-{n + 1:08d}", arrival))
        while pending:
            yield heapq.heappop(pending)[2]

    # --- the warehouse --------------------------------------------------------------------------------------------

    def _daily_demand(self, popularity: int) -> float:
        """Units of a SKU ordered per day, roughly: baskets of ~1.7 products of ~1.6 units."""
        return self.orders_per_hour * 24 * 1.7 * 1.6 * popularity / sum(self._sku_weights)

    def _stock_event(self, event_type: str, sku: str, at: int, **fields) -> dict:
        return {"event_id": f"ev-{next(self._ids):010d}", "event_type": event_type, "sku_id": sku,
                "event_time": at, **fields}

    def _catalogue_price(self, sku: str, base: str, region: str, factor: Decimal = Decimal(1)) -> str:
        """The price in the region's currency (whole units where they are small), times `factor`."""
        _, scale, _, _, _ = REGIONS[region]
        decimals = Decimal("1") if scale >= 1000 else Decimal("0.01")
        rise = PRICE_RISE[1] if self._risen and sku == PRICE_RISE[0] else Decimal(1)
        return str((Decimal(base) * rise * scale * factor).quantize(decimals))

    def _stock_take(self, at: int) -> list[dict]:
        """Opening stock of every SKU, and its catalogue price in every currency."""
        events = []
        for sku, _, price, popularity in CATALOGUE:
            days = 0.25 if sku in SCARCE else 3
            events.append(self._stock_event("STOCK_SET", sku, at, quantity=int(self._daily_demand(popularity) * days) + 1))
            events += [self._stock_event("PRICE_CHANGED", sku, at, unit_price=self._catalogue_price(sku, price, region),
                                         currency=REGIONS[region][0]) for region in REGIONS]
        return events

    def _restock(self, at: int) -> list[dict]:
        return [self._stock_event("STOCK_ADJUSTED", sku, at,
                                  delta=int(self._daily_demand(popularity) * (0.5 if sku in SCARCE else 1.2)) + 1)
                for sku, _, _, popularity in CATALOGUE]

    def _price_rise(self, at: int) -> list[dict]:
        sku, _ = PRICE_RISE
        price = next(item[2] for item in CATALOGUE if item[0] == sku)
        return [self._stock_event("PRICE_CHANGED", sku, at, unit_price=self._catalogue_price(sku, price, region),
                                  currency=REGIONS[region][0]) for region in REGIONS]

    def _event(self, event_type: str, order_id: str, at: int, **fields) -> dict:
        return {"event_id": f"ev-{next(self._ids):010d}", "event_type": event_type, "order_id": order_id,
                "event_time": at, **fields}

    def _basket(self, region: str) -> tuple[list[dict], Decimal]:
        items = []
        picks = self.rng.choices(CATALOGUE, weights=self._sku_weights, k=self.rng.choice((1, 1, 1, 2, 2, 3)))
        for sku, name, price, _ in {p[0]: p for p in picks}.values():
            stale = self.inventory and self.rng.random() < self.mix.stale_price
            unit = self._catalogue_price(sku, price, region, Decimal("0.95") if stale else Decimal(1))
            items.append({"sku_id": sku, "product_name": name, "quantity": self.rng.choice((1, 1, 1, 2, 3)),
                          "unit_price": unit})
        total = sum(Decimal(i["unit_price"]) * i["quantity"] for i in items)
        return items, total

    def _address(self, region: str, n: int, rng: random.Random | None = None) -> dict:
        _, _, _, city, country = REGIONS[region]
        rng = rng or self.rng
        return {"recipient_name": f"Buyer {n}", "phone": f"+00 {rng.randrange(10**8, 10**9)}",
                "line1": f"{rng.randrange(1, 300)} Market Street", "line2": None, "city": city,
                "postcode": f"{rng.randrange(10000, 99999)}", "country": country}

    def story(self, order_id: str, t: int) -> list[dict]:
        rng, mix = self.rng, self.mix
        region = rng.choices(self._regions, weights=self._region_weights)[0]
        currency = REGIONS[region][0]
        items, total = self._basket(region)
        n = int(order_id.split("-")[1])
        ev = [self._event("ORDER_CREATED", order_id, t, shop_id=f"shop-{region.lower()}-{rng.randrange(1, 6)}",
                          region=region, buyer_id=f"buyer-{rng.randrange(1, 50_000)}", currency=currency,
                          line_items=items, total_amount=str(total), shipping_address=self._address(region, n),
                          channel=rng.choice(CHANNELS))]
        roll = rng.random()
        if roll < mix.paid_at_once:
            t += rng.randrange(MIN, 12 * MIN)
        elif roll < mix.paid_at_once + mix.paid_late:
            t += rng.randrange(HOUR, 40 * HOUR)
        elif roll < mix.paid_at_once + mix.paid_late + mix.paid_after_cancel:
            return ev + [self._event("ORDER_PAID", order_id, t + rng.randrange(49 * HOUR, 60 * HOUR),
                                     amount=str(total), payment_method="CARD")]
        else:
            return ev  # never paid: reminders, then the auto-cancel
        ev.append(self._event("ORDER_PAID", order_id, t, amount=str(total),
                              payment_method=rng.choice(("CARD", "WALLET", "COD", "BANK_TRANSFER"))))
        roll = rng.random()
        if roll < mix.seller_out_of_stock:
            return ev + [self._event("SELLER_CANCELLED", order_id, t + rng.randrange(HOUR, 30 * HOUR),
                                     reason=rng.choice(SELLER_REASONS))]
        roll -= mix.seller_out_of_stock
        if roll < mix.remorse_cancel:
            return ev + [self._event("BUYER_CANCEL_REQUESTED", order_id, t + rng.randrange(MIN, 55 * MIN),
                                     reason="CHANGED_MIND")]
        roll -= mix.remorse_cancel
        if roll < mix.operator_cancel:
            return ev + [self._event("OPERATOR_CANCELLED", order_id, t + rng.randrange(HOUR, 20 * HOUR),
                                     reason=rng.choice(OPERATOR_REASONS))]
        roll -= mix.operator_cancel
        lines = list(enumerate(items, 1))  # (line id, item) of the lines still open
        if len(items) > 1 and rng.random() < mix.line_cancel:
            gone = rng.randrange(1, len(items) + 1)
            ev.append(self._event("SELLER_CANCELLED", order_id, t + rng.randrange(61 * MIN, 4 * HOUR),
                                  reason="OUT_OF_STOCK", line_ids=[str(gone)]))
            lines = [(n, item) for n, item in lines if n != gone]
        if roll < mix.buyer_cancel_request:
            t += rng.randrange(10 * MIN, 12 * HOUR)
            ev.append(self._event("BUYER_CANCEL_REQUESTED", order_id, t, reason="CHANGED_MIND"))
            answer = rng.random()
            if answer >= mix.request_accepted + mix.request_rejected:
                return ev  # never answered: cancelled after 48 h
            t += rng.randrange(30 * MIN, 30 * HOUR)
            accepted = answer < mix.request_accepted
            ev.append(self._event("SELLER_CANCEL_RESPONSE", order_id, t, decision="ACCEPT" if accepted else "REJECT"))
            if accepted:
                return ev
        t += rng.randrange(73 * HOUR, 100 * HOUR) if rng.random() < mix.shipped_late else rng.randrange(4 * HOUR, 60 * HOUR)
        return ev + self._shipping(order_id, t, lines)

    def _shipping(self, order_id: str, t: int, lines: list[tuple[int, dict]]) -> list[dict]:
        split = self._split(order_id, lines)
        if split is None:
            ev, end, delivered = self._parcel(order_id, t, self.rng, self._event)
            return ev + self._received(order_id, end, lines) if delivered else ev
        return self._packages(order_id, t, lines, *split)

    def _split(self, order_id: str, lines: list[tuple[int, dict]]) -> tuple[list[list[str]], random.Random] | None:
        """The line ids of each package when the order ships in several, and the order's own generator
        (drawn from for everything but the first package, so the shared one draws as if it had not split)."""
        if len(lines) < 2 or not self.mix.split_shipment:
            return None
        rng = random.Random(f"{self.seed}:{order_id}")
        if rng.random() >= self.mix.split_shipment:
            return None
        count = 3 if len(lines) >= 3 and rng.random() < self.mix.third_package else 2
        shuffled = rng.sample([n for n, _ in lines], len(lines))
        cuts = [0, *sorted(rng.sample(range(1, len(lines)), count - 1)), len(lines)]
        return [[str(n) for n in sorted(shuffled[a:b])] for a, b in zip(cuts, cuts[1:])], rng

    def _packages(self, order_id: str, t: int, lines: list[tuple[int, dict]], groups: list[list[str]],
                  rng: random.Random) -> list[dict]:
        """A split shipment: P1 is the story the order would have had in one package (the shared generator,
        the shared event ids), P2, ... are handed over later, drawn from the order's generator, with event
        ids of their own. What follows delivery (confirmation, review, after-sales) waits for the last package."""
        ev, first_end, first_delivered = self._parcel(order_id, t, self.rng, self._event, "P1", groups[0])
        after = self._received(order_id, first_end, lines) if first_delivered else []
        ends, given_up = [first_end], set() if first_delivered else set(groups[0])
        for n, group in enumerate(groups[1:], 2):
            t += rng.randrange(HOUR, 24 * HOUR)  # from another warehouse, or restocked: hours later
            more, end, delivered = self._parcel(order_id, t, rng, self._own_ids(f"P{n}"), f"P{n}", group)
            ev += more
            ends.append(end)
            if not delivered:
                given_up.update(group)
        # The order is delivered when its last package is (or is given up): what follows moves after that.
        shift = max(ends) - first_end
        for event in after:
            if event["event_type"] == "BUYER_CONFIRMED_RECEIPT" and given_up:
                continue  # left to the auto-confirm: the last delivery may be longer ago than its period
            if event["event_type"] == "AFTER_SALES_REQUESTED" and set(event["line_ids"]) & given_up:
                break  # about a line never delivered: no case (its events come last)
            ev.append({**event, "event_time": event["event_time"] + shift})
        return ev

    def _own_ids(self, package_id: str) -> Callable[..., dict]:
        """Makes the events of a package after the first: ids of their own (ev-ORDER-P2-1, ...), so the
        shared counter numbers the other events as if the order had not split."""
        ids = itertools.count(1)

        def event(event_type: str, order_id: str, at: int, **fields) -> dict:
            return {"event_id": f"ev-{order_id}-{package_id}-{next(ids)}", "event_type": event_type,
                    "order_id": order_id, "event_time": at, **fields}
        return event

    def _parcel(self, order_id: str, t: int, rng: random.Random, event: Callable[..., dict],
                package_id: str | None = None, line_ids: list[str] | None = None) -> tuple[list[dict], int, bool]:
        """One package from hand-over to delivery: its events, when it ends and whether it was delivered
        (if not, it failed and nobody asked for it again: it ends when it is given up)."""
        mix = self.mix
        package = {} if package_id is None else {"package_id": package_id}
        carrier = rng.choice(CARRIERS)
        ev = [event("PACKAGE_SHIPPED", order_id, t, carrier=carrier,
                    tracking_number=f"TRK{rng.randrange(10**9, 10**10)}",
                    **package, **({"line_ids": line_ids} if line_ids else {}))]
        status = "COLLECTED"
        for _ in range(rng.randrange(1, 4)):
            t += rng.randrange(6 * DAY, 8 * DAY) if rng.random() < mix.stalled else rng.randrange(2 * HOUR, 36 * HOUR)
            ev.append(event("LOGISTICS_UPDATE", order_id, t, status=status,
                            location=rng.choice(("Sort centre", "Hub", "Customs", "Local depot")),
                            description="Parcel scanned", **package))
            status = "IN_TRANSIT"
        if rng.random() < mix.delivery_failed:
            t += rng.randrange(4 * HOUR, 30 * HOUR)
            ev.append(event("DELIVERY_FAILED", order_id, t, reason="RECIPIENT_UNAVAILABLE", **package))
            if rng.random() >= mix.redelivery_requested:
                # No request: the window expires, the package is given up (the order cancelled if all is).
                return ev, t + REDELIVERY_WINDOW + HOUR, False
            t += rng.randrange(6 * HOUR, 5 * DAY)
            ev.append(event("REDELIVERY_REQUESTED", order_id, t, new_address=self._address("GB", 0, rng)
                            | {"line1": "New address 1"}, **package))
            if rng.random() < mix.redelivery_overdue:
                t += rng.randrange(4 * DAY, 6 * DAY)  # the carrier is late: overdue alert first
            else:
                t += rng.randrange(6 * HOUR, 30 * HOUR)
            ev.append(event("LOGISTICS_UPDATE", order_id, t, status="OUT_FOR_DELIVERY", location="Local depot",
                            description="Out for redelivery", **package))
        t += rng.randrange(4 * HOUR, 30 * HOUR)
        ev.append(event("DELIVERED", order_id, t, **package))
        return ev, t, True

    def _received(self, order_id: str, t: int, lines: list[tuple[int, dict]]) -> list[dict]:
        """After delivery at `t`: the buyer's confirmation, a review, an after-sales case (or none of them)."""
        rng, mix = self.rng, self.mix
        ev = []
        after = t
        if rng.random() < mix.buyer_confirms:
            after = t + rng.randrange(HOUR, 5 * DAY)
            ev.append(self._event("BUYER_CONFIRMED_RECEIPT", order_id, after))
        if rng.random() < mix.review:
            ev.append(self._event("REVIEW_POSTED", order_id, after + rng.randrange(MIN, DAY),
                                  rating=rng.choices((1, 2, 3, 4, 5), weights=(4, 3, 8, 25, 60))[0], comment="ok"))
        if rng.random() < mix.after_sales:
            ev += self._after_sales(order_id, after + rng.randrange(HOUR, 2 * DAY), lines)
        return ev

    def _after_sales(self, order_id: str, t: int, lines: list[tuple[int, dict]]) -> list[dict]:
        """A case about one of the lines delivered: most are answered in time (some rejected), the rest
        approved when the answer is late; most returns come back and are refunded, refunds are paid,
        exchanges and repairs resolved."""
        rng, case_id = self.rng, f"{order_id}-c1"
        kind = rng.choices(("RETURN", "REFUND", "EXCHANGE", "REPAIR"), weights=(5, 3, 1, 1))[0]
        line, item = rng.choice(lines)
        ev = [self._event("AFTER_SALES_REQUESTED", order_id, t, kind=kind, case_id=case_id,
                          reason=rng.choice(("NOT_AS_DESCRIBED", "DAMAGED", "WRONG_ITEM", "CHANGED_MIND")),
                          line_ids=[str(line)])]
        if rng.random() < 0.8:  # answered within the 48 h; otherwise approved when they pass
            t += rng.randrange(HOUR, 40 * HOUR)
            accepted = rng.random() < 0.75
            ev.append(self._event("AFTER_SALES_RESPONSE", order_id, t, case_id=case_id, reason="CHECKED",
                                  decision="ACCEPT" if accepted else "REJECT"))
            if not accepted:
                return ev
        else:
            t += 49 * HOUR
        refund = str(Decimal(item["unit_price"]) * item["quantity"])
        if kind == "RETURN":
            if rng.random() < 0.15:
                return ev  # never shipped back: the case closes after the return window
            t += rng.randrange(HOUR, 5 * DAY)
            ev.append(self._event("RETURN_SHIPPED", order_id, t, case_id=case_id, carrier=rng.choice(CARRIERS),
                                  tracking_number=f"RET{rng.randrange(10**9, 10**10)}"))
            t += rng.randrange(DAY, 4 * DAY)
            ev.append(self._event("RETURN_RECEIVED", order_id, t, case_id=case_id))
        if kind in ("RETURN", "REFUND"):
            return ev + [self._event("REFUND_ISSUED", order_id, t + rng.randrange(HOUR, DAY), case_id=case_id,
                                     amount=refund)]
        return ev + [self._event("AFTER_SALES_RESOLVED", order_id, t + rng.randrange(DAY, 5 * DAY), case_id=case_id,
                                 outcome=rng.choice(("APPROVED", "COMPLETED")))]
