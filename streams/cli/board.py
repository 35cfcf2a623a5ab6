"""What long-running commands show in the terminal: the demo's live board, and progress bars.

On a terminal both are drawn with rich (redrawn in place, fitted to the
terminal's width); when the output is a file or a pipe they degrade to plain
lines, one per notice or per interval, that a log or a test can read.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from datetime import datetime, timezone
from decimal import Decimal

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orderflow.streams.lifecycle.status import TAB_OF, TABS

# Without a terminal, a summary line (board) or progress line every this many seconds.
PLAIN_EVERY = 5.0


def _utc(ms: int, form: str) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime(form)


class Board:
    """Follows the order book (as one of its observers) and shows a summary on `console`."""

    def __init__(self, console: Console | None = None, latest: int = 12, every: float = PLAIN_EVERY):
        self.console = console or Console()
        self.every = every
        self.tabs: Counter = Counter()
        self.gmv: dict[str, Decimal] = defaultdict(Decimal)
        self.notices: deque = deque(maxlen=latest)
        self.noticed = 0  # notices seen so far; the plain form prints those it has not printed yet
        self._printed = 0
        self._summarised = 0.0
        self._live: Live | None = None
        self._last: tuple[int, Counter] | None = None  # what was shown last

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
                self.noticed += 1

    def show(self, now: int, tally: Counter) -> None:
        """Redraw the board on a terminal; otherwise print the new notices and, now and then, a summary."""
        self._last = now, tally
        if self.console.is_terminal:
            if self._live is None:
                self._live = Live(console=self.console, auto_refresh=False, vertical_overflow="crop")
                self._live.start()
            self._live.update(self.view(now, tally), refresh=True)
            return
        new = min(self.noticed - self._printed, len(self.notices))
        for output in list(self.notices)[len(self.notices) - new:]:
            self.console.out(self._notice_line(output), highlight=False)
        self._printed = self.noticed
        if time.monotonic() - self._summarised >= self.every:
            self._summarised = time.monotonic()
            self.console.out(self.summary(now, tally), highlight=False)

    def close(self) -> None:
        """Leave the last board on the screen (or its summary line) and give the terminal back. Idempotent."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._last is not None and not self.console.is_terminal:
            self.console.out(self.summary(*self._last), highlight=False)
        self._last = None

    def view(self, now: int, tally: Counter) -> Group:
        tabs = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
        for tab in TABS:
            tabs.add_column(tab, justify="right", no_wrap=True, overflow="ellipsis")
        tabs.add_row(*(f"{self.tabs[tab]:,}" for tab in TABS))
        figures = Table.grid(padding=(0, 2))
        figures.add_column(style="bold", no_wrap=True)
        figures.add_column(overflow="fold")
        figures.add_row("GMV", "  ".join(f"{c} {v:,.2f}" for c, v in sorted(self.gmv.items())) or "-")
        figures.add_row("events", self._events(tally))
        notices = Table(title="latest reminders, alerts and cancellations", title_justify="left", expand=True,
                        box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        notices.add_column("at", no_wrap=True, min_width=11)
        notices.add_column("order", no_wrap=True, overflow="ellipsis", ratio=1)
        notices.add_column("notice", no_wrap=True, overflow="ellipsis", ratio=2)
        for o in reversed(self.notices):
            notices.add_row(_utc(o["at"], "%m-%d %H:%M"), o["order_id"], f"{o['output']} {self._what(o)}")
        header = Text.assemble(("orderflow demo", "bold"), f"  simulated time {_utc(now, '%Y-%m-%d %H:%M UTC')}  ",
                               ("Ctrl-C to stop", "dim"), overflow="ellipsis", no_wrap=True)
        return Group(header, tabs, figures, notices)

    def summary(self, now: int, tally: Counter) -> str:
        tabs = "  ".join(f"{tab} {self.tabs[tab]:,}" for tab in TABS)
        gmv = "  ".join(f"{c} {v:,.2f}" for c, v in sorted(self.gmv.items())) or "-"
        return f"{_utc(now, '%Y-%m-%d %H:%M UTC')}  {tabs}  GMV {gmv}  events {self._events(tally)}"

    @staticmethod
    def _events(tally: Counter) -> str:
        return (f"in {tally['in']:,}  applied {tally['applied']:,}  dead-lettered {tally['dead_lettered']:,}  "
                f"duplicates {tally['duplicates']:,}")

    @staticmethod
    def _what(output: dict) -> str:
        return output.get("kind") or f"{output.get('to_status') or ''} ({output.get('reason')})".strip()

    def _notice_line(self, o: dict) -> str:
        return f"{_utc(o['at'], '%m-%d %H:%M')}  {o['order_id']}  {o['output']}  {self._what(o)}"


class Meter:
    """Progress of a long command, on stderr: a rich bar on a terminal, else a plain line every `every` seconds.

    `total` may be unknown (None); `detail` is what the work has done so far, in words.
    """

    def __init__(self, what: str, total: float | None = None, console: Console | None = None,
                 every: float = PLAIN_EVERY):
        self.console = console or Console(stderr=True)
        self.what, self.total, self.every = what, total, every
        self._last = time.monotonic()
        self._progress: Progress | None = None
        if self.console.is_terminal:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=self.console)
            self._task = self._progress.add_task(what, total=total, detail="")

    def __enter__(self) -> Meter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def note(self, line: str) -> None:
        """A line printed above the bar (or among the plain lines)."""
        self.console.out(line, highlight=False)

    def update(self, completed: float, detail: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, detail=detail)
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            share = f" ({completed / self.total:.0%})" if self.total else ""
            self.console.out(f"{self.what}: {detail}{share}", highlight=False)
