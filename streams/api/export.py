"""Order exports as a seller centre gives them: one row per line item, CSV or Excel.

No Faust and no HTTP: rows are built from order dicts (as the orders table
holds them, or as the API's `detail=1` listing returns them) and written one
at a time, so an export of any size needs the memory of one row (xlsx through
xlsxwriter's constant_memory mode).

Personal data: the recipient's name, phone, address lines and postcode are
masked unless asked for, and left out until the order is released to the
seller to ship (while unpaid or on hold, and for good if cancelled before).
Text cells that a spreadsheet would read as a formula are neutralised (OWASP,
CSV injection). Times are ISO 8601 in the order's region time zone, with its
UTC offset.

An order may ship in several packages: a row's shipped and delivered times,
carrier, tracking number and package id are those of the package its line went
in (empty while the line is not shipped). Packages are read through the lifecycle's `shipping.packages`,
which also reads an order stored before packages (its one parcel on the order).
"""
from __future__ import annotations

import csv
import functools
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO
from zoneinfo import ZoneInfo

from orderflow.streams.lifecycle import Policy, lines, shipping
from orderflow.streams.lifecycle import status as st

HEADER = (
    "Order ID", "Order Status", "Seller Tab", "SKU ID", "Product Name", "Quantity", "Unit Price", "Line Amount",
    "Order Amount", "Currency", "Created Time", "Paid Time", "Shipped Time", "Delivered Time", "Completed Time",
    "Cancelled Time", "Cancel Reason", "Cancel Detail", "Cancelled By", "Carrier", "Tracking Number", "Buyer ID",
    "Recipient", "Phone", "Address", "City", "Postcode", "Country", "Region", "Shop ID",
    "Line ID", "Line Status",  # added last, so columns read by position stay where they were
    "Package ID",
)
_TIMES = ("created_at", "paid_at", "shipped_at", "delivered_at", "completed_at", "cancelled_at")
_PACKAGE_TIMES = ("shipped_at", "delivered_at")
# What a spreadsheet may take for the start of a formula; OWASP adds tab and carriage return to = + - @.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MASK = "***"

ZoneOf = Callable[[str | None], ZoneInfo]


def mask_name(name: str | None) -> str | None:
    return name[:1] + MASK if name else name


def mask_phone(phone: str | None) -> str | None:
    """Keeps the last two digits, enough to tell two numbers apart on a call."""
    return MASK + "".join(c for c in phone if c.isdigit())[-2:] if phone else phone


def masked_address(address: dict) -> dict:
    """The address with who and where masked; city and country stay (sales by place)."""
    hidden = {name: MASK for name in ("line1", "line2", "postcode") if address.get(name)}
    return {**address, **hidden, "recipient_name": mask_name(address.get("recipient_name")),
            "phone": mask_phone(address.get("phone"))}


def shown_address(order: dict, include_personal_data: bool = False) -> dict | None:
    """The shipping address as views and exports show it: masked unless personal data is asked for,
    and without recipient, phone and lines, whatever is asked, until the order is released to the
    seller to ship (TikTok Shop hides it while unpaid and during the remorse period): so never for
    an order cancelled before that, by the buyer in the hold or for want of payment."""
    address = order.get("shipping_address")
    if not address:
        return address
    if not any(step.get("to_status") == st.AWAITING_SHIPMENT for step in order.get("history") or ()):
        return {**address, "recipient_name": None, "phone": None, "line1": None, "line2": None, "postcode": None}
    return address if include_personal_data else masked_address(address)


def neutralise(value):
    """A text cell starting like a formula gets a leading quote; other values are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def time_zones(policy: Policy) -> ZoneOf:
    """The region's time zone from the region policy (UTC for a region it does not list)."""
    @functools.cache
    def zone_of(region: str | None) -> ZoneInfo:
        rules = policy.for_region(region)
        return ZoneInfo(rules.timezone if rules else "UTC")
    return zone_of


def local_time(ms: int | None, zone: ZoneInfo) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="seconds")


def line_packages(order: dict) -> dict[str, dict]:
    """The package each shipped line went in, by line id (an order as stored, or as the API shows it)."""
    return {line: package for package in shipping.packages(order) for line in package["line_ids"]}


def rows(order: dict, zone_of: ZoneOf, include_personal_data: bool = False) -> Iterator[list]:
    """The export rows of one order, one per line item."""
    address = shown_address(order, include_personal_data) or {}
    zone = zone_of(order.get("region"))
    street = ", ".join(part for part in (address.get("line1"), address.get("line2")) if part) or None
    package_of = line_packages(order)
    before = [order["order_id"], order["status"], st.TAB_OF[order["status"]]]
    amount = [Decimal(order["total_amount"]) if order.get("total_amount") is not None else None, order.get("currency")]
    cancel = [order.get("cancel_reason"), order.get("cancel_detail"), order.get("cancel_initiator")]
    after = [
        order.get("buyer_id"), address.get("recipient_name"), address.get("phone"), street, address.get("city"),
        address.get("postcode"), address.get("country"), order.get("region"), order.get("shop_id"),
    ]
    for place, item in enumerate(order.get("line_items") or [{}], 1):
        quantity, price = item.get("quantity"), item.get("unit_price")
        price = Decimal(price) if price is not None else None
        line = [item.get("sku_id"), item.get("product_name"), quantity, price,
                price * quantity if price is not None and quantity is not None else None]
        line_id = lines.line_id(item, place)
        package = package_of.get(line_id, {})
        # A line is shipped and delivered with its package (not when the order's first package was).
        times = [local_time(package.get(name) if name in _PACKAGE_TIMES else order.get(name), zone) for name in _TIMES]
        shipped = [package.get("carrier"), package.get("tracking_number")]
        own = [line_id, lines.status_of(order, line_id), package.get("package_id")]
        yield [neutralise(value) for value in before + line + amount + times + cancel + shipped + after + own]


class CsvWriter:
    """Rows as CSV to a text stream (opened with newline='')."""

    def __init__(self, stream: TextIO, owns_stream: bool = False):
        self._stream, self._owns_stream = stream, owns_stream
        self._csv = csv.writer(stream)
        self._csv.writerow(HEADER)

    def write(self, row: list) -> None:
        self._csv.writerow(row)

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()


class XlsxWriter:
    """Rows to an .xlsx file, flushed row by row (constant_memory): bounded memory for any size.
    A sheet holds at most 1,048,576 rows; the export goes on in another sheet."""

    MAX_ROWS = 1_048_576

    def __init__(self, path: Path):
        import xlsxwriter  # only exports to Excel need it

        # Strings stay strings: no formula, number or URL is ever made from the data.
        self._book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
            "strings_to_urls": False})
        self._bold = self._book.add_format({"bold": True})
        self._sheets = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        self._sheet = self._book.add_worksheet("Orders" if self._sheets == 1 else f"Orders {self._sheets}")
        self._sheet.write_row(0, 0, HEADER, self._bold)
        self._row = 1

    def write(self, row: list) -> None:
        if self._row == self.MAX_ROWS:
            self._new_sheet()
        for column, value in enumerate(row):
            if isinstance(value, str):
                self._sheet.write_string(self._row, column, value)
            elif value is not None:
                self._sheet.write_number(self._row, column, value)
        self._row += 1

    def close(self) -> None:
        self._book.close()


FORMATS = ("csv", "xlsx")


def open_writer(format: str, path: Path) -> CsvWriter | XlsxWriter:
    """A writer to a new file. CSV gets a byte-order mark so that Excel reads it as UTF-8."""
    if format == "xlsx":
        return XlsxWriter(path)
    return CsvWriter(path.open("w", newline="", encoding="utf-8-sig"), owns_stream=True)


def write_orders(orders: Iterable[dict], writer: CsvWriter | XlsxWriter, zone_of: ZoneOf,
                 include_personal_data: bool = False) -> tuple[int, int]:
    """Write every order's rows as they come; returns (orders, rows) written."""
    written_orders = written_rows = 0
    for order in orders:
        for row in rows(order, zone_of, include_personal_data):
            writer.write(row)
            written_rows += 1
        written_orders += 1
    return written_orders, written_rows
