"""The live terminal view of the demo: orders per seller tab, GMV, the latest notices."""
from __future__ import annotations

from collections import Counter, defaultdict, deque
from datetime import datetime, timezone
from decimal import Decimal

from .lifecycle.status import TAB_OF, TABS

_CLEAR = "\x1b[H\x1b[2J"


class Board:
    """Follows the order book (as one of its observers) and draws a summary."""

    def __init__(self, latest: int = 12):
        self.tabs: Counter = Counter()
        self.gmv: dict[str, Decimal] = defaultdict(Decimal)
        self.notices: deque = deque(maxlen=latest)

    def observe(self, before: dict | None, after: dict | None, outputs: list[dict]) -> None:
        old = TAB_OF.get((before or {}).get("status"))
        new = TAB_OF.get((after or {}).get("status"))
        if old != new:
            self.tabs[old] -= bool(old)
            self.tabs[new] += bool(new)
        if after and after.get("paid_amount") and not (before or {}).get("paid_amount"):
            self.gmv[after["currency"]] += Decimal(after["paid_amount"])
        for output in outputs:
            if output["output"] in ("reminder", "alert", "dead_letter") or output.get("to_status") == "CANCELLED":
                self.notices.append(output)

    def render(self, now: int, tally: Counter) -> str:
        clock = datetime.fromtimestamp(now / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [f"orderflow demo   simulated time {clock}   (Ctrl-C to stop)", ""]
        lines.append("  ".join(f"{tab}: {self.tabs[tab]:>6,}" for tab in TABS))
        lines.append("GMV: " + ("  ".join(f"{c} {v:,.2f}" for c, v in sorted(self.gmv.items())) or "-"))
        lines.append(f"events in {tally['in']:,}  applied {tally['applied']:,}  dead-lettered "
                     f"{tally['dead_lettered']:,}  duplicates {tally['duplicates']:,}")
        lines += ["", "latest reminders, alerts and cancellations:"]
        for o in reversed(self.notices):
            at = datetime.fromtimestamp(o["at"] / 1000, timezone.utc).strftime("%m-%d %H:%M")
            what = o.get("kind") or f"CANCELLED ({o.get('reason')})"
            lines.append(f"  {at}  {o['order_id']:<14} {o['output']:<13} {what}")
        return _CLEAR + "\n".join(lines) + "\n"
