"""Export rows on plain order dicts: the columns, masking, formula escaping, region offsets; CSV and xlsx files."""
from __future__ import annotations

import csv
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from orderflow.streams.api.export import HEADER, XlsxWriter, neutralise, open_writer, rows, time_zones, write_orders
from orderflow.streams.api.order_query import detail
from orderflow.streams.lifecycle import Policy
from orderflow.streams.lifecycle.order import new_order
from support.orders import (ADDRESS, DAY, HOUR, MIN, T0, created, lines, paid, seller_cancelled, shipped, total,
                            update)
from support.replays import replayed, shipped_in_packages, stored_before_packages

ZONE_OF = time_zones(Policy.load())
NOV_1 = 1_793_534_400_000  # 2026-11-01T12:00:00Z (GMT in London)
JUL_1 = 1_782_907_200_000  # 2026-07-01T12:00:00Z (BST in London)


def order(order_id="x1", region="GB", **fields) -> dict:
    base = {**new_order(order_id), "status": "CANCELLED", "region": region, "shop_id": "shop-1",
            "buyer_id": "buyer-7", "currency": "GBP", "total_amount": "39.97",
            "line_items": [{"sku_id": "sku-1", "product_name": "Phone case", "quantity": 2, "unit_price": "9.99"},
                           {"sku_id": "sku-2", "product_name": "Cable", "quantity": 1, "unit_price": "19.99"}],
            "shipping_address": ADDRESS, "created_at": NOV_1, "paid_at": NOV_1 + 60_000,
            "cancelled_at": NOV_1 + 120_000, "cancel_reason": "SELLER_CANCELLED", "cancel_initiator": "SELLER",
            "cancel_detail": "OUT_OF_STOCK", "history": steps("UNPAID", "AWAITING_SHIPMENT", "CANCELLED")}
    return {**base, **fields}


def steps(*statuses: str) -> list[dict]:
    """A history through `statuses`, a minute apart."""
    return [{"at": NOV_1 + n * 60_000, "from_status": before, "to_status": status, "reason": "-"}
            for n, (before, status) in enumerate(zip((None, *statuses), statuses))]


def as_dicts(order_dict, **kw) -> list[dict]:
    return [dict(zip(HEADER, row)) for row in rows(order_dict, ZONE_OF, **kw)]


def test_one_row_per_line_item_with_the_seller_centre_columns():
    first, second = as_dicts(order())
    assert len(HEADER) == len(set(HEADER)) == 33
    assert first == {
        "Order ID": "x1", "Order Status": "CANCELLED", "Seller Tab": "Cancelled", "SKU ID": "sku-1",
        "Product Name": "Phone case", "Quantity": 2, "Unit Price": Decimal("9.99"), "Line Amount": Decimal("19.98"),
        "Order Amount": Decimal("39.97"), "Currency": "GBP", "Created Time": "2026-11-01T12:00:00+00:00",
        "Paid Time": "2026-11-01T12:01:00+00:00", "Shipped Time": None, "Delivered Time": None,
        "Completed Time": None, "Cancelled Time": "2026-11-01T12:02:00+00:00", "Cancel Reason": "SELLER_CANCELLED",
        "Cancel Detail": "OUT_OF_STOCK", "Cancelled By": "SELLER", "Carrier": None, "Tracking Number": None,
        "Buyer ID": "buyer-7", "Recipient": "A***", "Phone": "***23", "Address": "***", "City": "London",
        "Postcode": "***", "Country": "GB", "Region": "GB", "Shop ID": "shop-1", "Line ID": "1",
        "Line Status": "CANCELLED", "Package ID": None}
    assert (second["SKU ID"], second["Quantity"], second["Line Amount"]) == ("sku-2", 1, Decimal("19.99"))
    assert (second["Line ID"], second["Line Status"]) == ("2", "CANCELLED")
    assert second["Order Amount"] == Decimal("39.97")  # the order's amount on each of its rows


def test_personal_data_only_when_asked_for():
    clear = as_dicts(order(), include_personal_data=True)[0]
    assert (clear["Recipient"], clear["Phone"], clear["Address"], clear["Postcode"]) == (
        "Ada Buyer", "'+44 7700 900123", "1 High Street", "N1 9GU")  # a leading + is neutralised like any other
    masked = " ".join(str(value) for value in as_dicts(order())[0].values())
    for secret in ("Ada", "7700", "900123", "High Street", "N1 9GU"):
        assert secret not in masked


@pytest.mark.parametrize("history", [("UNPAID",), ("UNPAID", "ON_HOLD"), ("UNPAID", "CANCELLED"),
                                     ("UNPAID", "ON_HOLD", "CANCELLED")])
def test_the_address_is_left_out_until_the_order_may_ship_even_when_personal_data_is_asked_for(history):
    """Unpaid, on hold, or cancelled before it could ship: the seller never had it to ship."""
    for asked in (False, True):
        row = as_dicts(order(status=history[-1], history=steps(*history)), include_personal_data=asked)[0]
        assert (row["Recipient"], row["Phone"], row["Address"], row["Postcode"]) == (None, None, None, None)
        assert (row["City"], row["Country"]) == ("London", "GB")  # where, for sales by place
    released = order(status="AWAITING_SHIPMENT", history=steps("UNPAID", "ON_HOLD", "AWAITING_SHIPMENT"))
    assert as_dicts(released, include_personal_data=True)[0]["Recipient"] == "Ada Buyer"


def test_each_line_shows_its_own_status():
    """A line the seller cancelled on its own is CANCELLED; the others have the order's status."""
    items = [{"sku_id": "sku-1", "product_name": "Case", "quantity": 2, "unit_price": "9.99", "line_id": "L-a"},
             {"sku_id": "sku-2", "product_name": "Cable", "quantity": 1, "unit_price": "19.99", "line_id": "L-b"}]
    cancelled = {"L-b": {"at": NOV_1, "reason": "OUT_OF_STOCK", "amount": "19.99"}}
    first, second = as_dicts(order(status="AWAITING_SHIPMENT", line_items=items, cancelled_lines=cancelled))
    assert (first["Line ID"], first["Line Status"]) == ("L-a", "AWAITING_SHIPMENT")
    assert (second["Line ID"], second["Line Status"]) == ("L-b", "CANCELLED")


def test_columns_read_by_position_stay_where_they_were():
    """Consumers read columns by position: new ones are appended, never inserted."""
    assert HEADER.index("Carrier") == 19 and HEADER.index("Tracking Number") == 20 and HEADER.index("Shop ID") == 29
    assert HEADER[-3:] == ("Line ID", "Line Status", "Package ID")


THREE = lines(3)  # line ids 1, 2, 3


def old_order() -> dict:
    """Shipped in one parcel (line 3 cancelled before), stored by the version before packages."""
    events = [created("old", T0, line_items=THREE, total_amount=total(THREE)), paid("old", T0 + MIN, total(THREE)),
              seller_cancelled("old", T0 + HOUR, line_ids=["3"]), shipped("old", T0 + DAY, tracking_number="RM9"),
              update("old", T0 + 2 * DAY)]
    _, book = replayed(events, T0 + 2 * DAY, Policy.load())
    return stored_before_packages(book.orders["old"])


def shipping_columns(order_dict) -> list[tuple]:
    return [(row["Line ID"], row["Line Status"], row["Carrier"], row["Tracking Number"], row["Package ID"])
            for row in as_dicts(order_dict)]


def test_each_line_shows_the_carrier_tracking_number_and_id_of_its_own_package():
    orders = shipped_in_packages()
    assert orders["two"]["status"] == "IN_TRANSIT" and orders["part"]["status"] == "PARTIALLY_SHIPPING"
    assert shipping_columns(orders["two"]) == [("1", "IN_TRANSIT", "Royal Mail", "RM1", "A"),
                                               ("2", "IN_TRANSIT", "DPD", "DPD2", "B"),
                                               ("3", "IN_TRANSIT", "Royal Mail", "RM1", "A")]
    # A line not shipped yet has no carrier, tracking number or package.
    assert shipping_columns(orders["part"]) == [("1", "PARTIALLY_SHIPPING", None, None, None),
                                                ("2", "PARTIALLY_SHIPPING", "Evri", "EV7", "P"),
                                                ("3", "PARTIALLY_SHIPPING", None, None, None)]
    assert as_dicts(orders["part"])[0]["Seller Tab"] == "To ship"


def test_an_order_stored_before_packages_exports_its_carrier_on_each_shipped_line():
    old = old_order()
    assert "packages" not in old and old["carrier"] == "Royal Mail"
    # Its parcel reads as package "1", of the lines open when it shipped (not the one cancelled before).
    assert shipping_columns(old) == [("1", "IN_TRANSIT", "Royal Mail", "RM9", "1"),
                                     ("2", "IN_TRANSIT", "Royal Mail", "RM9", "1"),
                                     ("3", "CANCELLED", None, None, None)]


def test_a_line_is_shipped_and_delivered_with_its_package():
    orders = shipped_in_packages()
    times = [(row["Line ID"], row["Shipped Time"], row["Delivered Time"])
             for name in ("two", "part") for row in as_dicts(orders[name])]
    assert times == [("1", "2026-11-19T11:06:40+00:00", "2026-11-21T11:06:40+00:00"),  # A: day 1, delivered day 3
                     ("2", "2026-11-19T12:06:40+00:00", None),                         # B: day 1 + 1 h, on its way
                     ("3", "2026-11-19T11:06:40+00:00", "2026-11-21T11:06:40+00:00"),
                     ("1", None, None), ("2", "2026-11-19T11:06:40+00:00", None), ("3", None, None)]


def test_rows_of_an_order_as_the_api_shows_it_are_the_rows_of_the_order():
    """`orderflow export` writes the rows of the API's detail listing: the same as from the orders table."""
    orders = shipped_in_packages()
    orders["old"] = old_order()
    for shown in orders.values():
        for personal in (False, True):
            assert list(rows(detail(shown, personal), ZONE_OF, personal)) == list(rows(shown, ZONE_OF, personal))


def test_csv_and_xlsx_files_carry_the_package_column_last(tmp_path):
    orders = shipped_in_packages()
    read = {}
    for format in ("csv", "xlsx"):
        path = tmp_path / f"orders.{format}"
        writer = open_writer(format, path)
        write_orders([orders["two"], orders["part"]], writer, ZONE_OF)
        writer.close()
        if format == "csv":
            with path.open(newline="", encoding="utf-8-sig") as fh:
                table = [tuple(row) for row in csv.reader(fh)]
        else:
            book = load_workbook(path, read_only=True)
            table = list(book["Orders"].iter_rows(values_only=True))
            book.close()
        assert table[0] == HEADER
        read[format] = [(row[0], row[19], row[20], row[-1]) for row in table[1:]]  # by position
    assert read["xlsx"] == [("two", "Royal Mail", "RM1", "A"), ("two", "DPD", "DPD2", "B"),
                            ("two", "Royal Mail", "RM1", "A"), ("part", None, None, None),
                            ("part", "Evri", "EV7", "P"), ("part", None, None, None)]
    assert read["csv"] == [tuple("" if value is None else value for value in row) for row in read["xlsx"]]


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_cells_that_would_start_a_formula_get_a_leading_quote(text):
    row = as_dicts(order(line_items=[{"sku_id": text, "product_name": text, "quantity": 1, "unit_price": "1"}],
                         shop_id=text, buyer_id=text, carrier=text, tracking_number=text))[0]
    for column in ("SKU ID", "Product Name", "Shop ID", "Buyer ID", "Carrier", "Tracking Number"):
        assert row[column] == "'" + text
    assert neutralise("Phone case") == "Phone case" and neutralise("a=b") == "a=b" and neutralise(5) == 5


@pytest.mark.parametrize("region, created, expected", [
    ("GB", NOV_1, "2026-11-01T12:00:00+00:00"),
    ("GB", JUL_1, "2026-07-01T13:00:00+01:00"),  # summer time
    ("SG", NOV_1, "2026-11-01T20:00:00+08:00"),
    ("ID", NOV_1, "2026-11-01T19:00:00+07:00"),
    ("PH", NOV_1, "2026-11-01T20:00:00+08:00"),
    ("VN", NOV_1, "2026-11-01T19:00:00+07:00"),
    ("XX", NOV_1, "2026-11-01T12:00:00+00:00"),  # a region the policy does not list: UTC
])
def test_times_are_iso_8601_in_the_region_time_zone_with_its_offset(region, created, expected):
    assert as_dicts(order(region=region, created_at=created))[0]["Created Time"] == expected


def test_csv_file_reads_back_with_header_masking_and_escaping(tmp_path):
    path = tmp_path / "orders.csv"
    writer = open_writer("csv", path)
    assert write_orders([order("a"), order("b", buyer_id="=cmd")], writer, ZONE_OF) == (2, 4)
    writer.close()
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # byte-order mark: Excel reads UTF-8
    with path.open(newline="", encoding="utf-8-sig") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == list(HEADER) and len(read) == 4
    assert [r["Order ID"] for r in read] == ["a", "a", "b", "b"]
    assert read[2]["Buyer ID"] == "'=cmd" and read[0]["Recipient"] == "A***" and read[0]["Line Amount"] == "19.98"
    assert read[0]["Shipped Time"] == ""


def test_xlsx_file_opened_back_with_openpyxl(tmp_path):
    path = tmp_path / "orders.xlsx"
    writer = open_writer("xlsx", path)
    write_orders([order("a", region="SG", buyer_id="@evil"), order("b")], writer, ZONE_OF, include_personal_data=True)
    writer.close()
    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["Orders"]
    table = list(book["Orders"].iter_rows(values_only=True))
    book.close()
    assert table[0] == HEADER and len(table) == 5
    first = dict(zip(HEADER, table[1]))
    assert first["Buyer ID"] == "'@evil" and first["Phone"] == "'+44 7700 900123"
    assert first["Quantity"] == 2 and first["Unit Price"] == pytest.approx(9.99) and first["Line Amount"] == 19.98
    assert first["Created Time"] == "2026-11-01T20:00:00+08:00" and first["Shipped Time"] is None
    assert isinstance(first["Order Amount"], float)  # numbers, for the analyst's sums


def test_xlsx_goes_on_in_a_new_sheet_when_one_is_full(tmp_path, monkeypatch):
    monkeypatch.setattr(XlsxWriter, "MAX_ROWS", 3)  # a real sheet holds 1,048,576 rows
    path = tmp_path / "many.xlsx"
    writer = open_writer("xlsx", path)
    write_orders([order(f"o{n}") for n in range(3)], writer, ZONE_OF)  # six rows
    writer.close()
    book = load_workbook(path, read_only=True)
    sheets = {name: [r[0] for r in book[name].iter_rows(values_only=True)] for name in book.sheetnames}
    book.close()
    assert sheets == {"Orders": ["Order ID", "o0", "o0"], "Orders 2": ["Order ID", "o1", "o1"],
                      "Orders 3": ["Order ID", "o2", "o2"]}
