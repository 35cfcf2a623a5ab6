"""The demo's board and the progress bars, drawn by rich on its own consoles: a terminal of a given width
(the library's recording console) and a plain file. The demo on a real pseudo-terminal: test_first_hour.py."""
from __future__ import annotations

import io
import re
from collections import Counter

from rich.console import Console

from orderflow.streams.cli.board import Board, Meter

T0 = 1_795_132_800_000  # 2026-11-20T00:00:00Z
TALLY = Counter({"in": 1234, "applied": 1200, "dead_lettered": 30, "duplicates": 4})


def terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None, record=True)


def plain() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=80)


def board_with_orders(console: Console) -> Board:
    board = Board(console, every=0)
    board.observe(None, {"status": "UNPAID"}, [
        {"output": "status_change", "order_id": "ord-1", "at": T0, "to_status": "UNPAID", "reason": "CREATED"},
        {"output": "reminder", "order_id": "ord-1", "at": T0 + 900_000, "kind": "PAYMENT_REMINDER_15M"}])
    board.observe(None, {"status": "UNPAID"}, [])
    board.observe({"status": "UNPAID"}, {"status": "AWAITING_SHIPMENT", "paid_amount": "19.99", "currency": "GBP"}, [])
    board.observe({"status": "UNPAID"}, {"status": "CANCELLED"}, [
        {"output": "status_change", "order_id": "ord-with-a-long-upstream-identifier-0001", "at": T0 + 3_600_000,
         "to_status": "CANCELLED", "reason": "UNPAID_TIMEOUT"}])
    return board


def test_the_board_fits_the_terminal_and_shows_tabs_gmv_counts_and_latest_notices():
    for width in (50, 72, 120):
        console = terminal(width)
        console.print(board_with_orders(console).view(T0 + 7_200_000, TALLY))
        text = console.export_text()
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width, text
        assert "orderflow demo" in lines[0] and "2026-11-20 02:00" in lines[0]
        header = next(i for i, line in enumerate(lines) if "Unpaid" in line)
        assert lines[header].split() == ["Unpaid", "To", "ship", "Shipped", "Completed", "Cancelled"]
        assert lines[header + 2].split() == ["0", "1", "0", "0", "1"]
        assert "GBP 19.99" in text and "in 1,234" in text
        # The newest notice first; a long order id is cut to the column, not wrapped.
        notices = [line for line in lines if line.startswith(" 11-20 ")]
        assert [n.split()[2][:6] for n in notices] == ["ord-wi", "ord-1"]
    wide = terminal(120)
    wide.print(board_with_orders(wide).view(T0, TALLY))
    text = wide.export_text()
    assert "status_change CANCELLED (UNPAID_TIMEOUT)" in text and "reminder PAYMENT_REMINDER_15M" in text


def test_without_a_terminal_the_board_prints_each_notice_once_and_summary_lines():
    console = plain()
    board = board_with_orders(console)
    board.show(T0 + 7_200_000, TALLY)
    board.observe({"status": "AWAITING_SHIPMENT"}, {"status": "AWAITING_SHIPMENT"}, [
        {"output": "alert", "order_id": "ord-2", "at": T0 + 7_300_000, "kind": "OUT_OF_STOCK"}])
    board.show(T0 + 7_300_000, TALLY)
    board.close()
    lines = console.file.getvalue().splitlines()
    summary = ("2026-11-20 02:01 UTC  Unpaid 0  To ship 1  Shipped 0  Completed 0  Cancelled 1  GMV GBP 19.99  "
               "events in 1,234  applied 1,200  dead-lettered 30  duplicates 4")
    assert lines == [
        "11-20 00:15  ord-1  reminder  PAYMENT_REMINDER_15M",
        "11-20 01:00  ord-with-a-long-upstream-identifier-0001  status_change  CANCELLED (UNPAID_TIMEOUT)",
        summary.replace("02:01", "02:00"),
        "11-20 02:01  ord-2  alert  OUT_OF_STOCK",
        summary,
        summary,  # the last figures again as the board closes
    ]
    assert "\x1b" not in console.file.getvalue()


def test_a_progress_bar_on_a_terminal_and_plain_lines_otherwise():
    console = terminal(80)
    with Meter("exporting", 200, console) as meter:
        meter.note("a note above the bar")
        meter.update(100, "100 orders, 180 rows")
    text = console.file.getvalue()
    assert "a note above the bar" in text and "exporting" in text and "100 orders, 180 rows" in text
    assert " 50%" in text and "━" in text
    assert all(len(line) <= 80 for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)))

    console = plain()
    with Meter("publishing", None, console, every=0) as meter:
        meter.update(5000, "5,000 events (2,500/s)")
    with Meter("exporting", 200, console, every=0) as meter:
        meter.update(50, "50 orders, 90 rows")
    assert console.file.getvalue().splitlines() == [
        "publishing: 5,000 events (2,500/s)", "exporting: 50 orders, 90 rows (25%)"]
