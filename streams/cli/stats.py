"""`orderflow stats`: the analytics figures as a terminal table, and a chart of orders and GMV over time.

The figures are the latest revision of every metric (analytics.Latest), read
from order-analytics or computed by a replay. DAY windows are labelled with
the region's local date; HOUR and MINUTE windows with their UTC start. The
chart is drawn once as shapes and written as SVG inside a self-contained
HTML page, or as PNG through Pillow.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from datetime import date, datetime, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.streams.analytics.facts import HOUR_MS, MINUTE_MS, Latest, WindowRow
from orderflow.streams.config import Config
from orderflow.streams.kafka import topics
from orderflow.streams.kafka.admin import client_settings
from orderflow.streams.kafka.codec import SchemaError, codec_for_topic
from orderflow.streams.kafka.tansu import true_end_offsets

CHART_SUFFIXES = (".html", ".png")
Metrics = dict[str, list[tuple[str | None, str]]]


async def read_latest(config: Config) -> tuple[Latest, int]:
    """The figures on order-analytics now, and how many records could not be decoded."""
    spec = topics.ANALYTICS
    codec = codec_for_topic(spec)
    latest, undecodable = Latest(), 0
    consumer = AIOKafkaConsumer(**client_settings(config), enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()
        await consumer.topics()  # refreshes the metadata
        partitions = [TopicPartition(spec.name, p) for p in sorted(consumer.partitions_for_topic(spec.name) or ())]
        if not partitions:
            raise LookupError(f"topic {spec.name} does not exist yet (is a worker running?)")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The embedded broker understates listed end offsets of batched topics; fetches tell the truth.
        ends = await true_end_offsets(client_settings(config), partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for message in (m for records in batch.values() for m in records):
                try:
                    latest.add(codec.decode(message.value))
                except SchemaError:
                    undecodable += 1
    finally:
        await consumer.stop()
    return latest, undecodable


_STEP = {"DAY": 1, "HOUR": HOUR_MS, "MINUTE": MINUTE_MS}


def _slot(row: WindowRow, zone_of: Callable[[str], tzinfo]) -> int:
    """A window's place on the time axis: the ordinal of its local date for DAY, else its start."""
    if row.granularity == "DAY":
        return datetime.fromtimestamp(row.window_start / 1000, zone_of(row.region)).date().toordinal()
    return row.window_start


def _slot_label(granularity: str, slot: int) -> str:
    if granularity == "DAY":
        return date.fromordinal(slot).isoformat()
    return datetime.fromtimestamp(slot / 1000, timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def label(row: WindowRow, zone_of: Callable[[str], tzinfo]) -> str:
    return _slot_label(row.granularity, _slot(row, zone_of))


def select(latest: Latest, granularity: str, region: str | None, shop: str | None) -> dict[WindowRow, Metrics]:
    return {row: metrics for row, metrics in latest.windows().items()
            if row.granularity == granularity and region in (None, row.region) and shop in (None, row.shop_id)}


# --- the table ------------------------------------------------------------------------------------------------------

_COLUMNS = ("REGION", "SHOP", "WINDOW", "CREATED", "PAID", "CONVERSION", "GMV", "AOV", "CANCELLED", "LATE DISPATCH",
            "FAILED DELIVERY", "RATING", "AFTER-SALES")
_DETAILS = (
    ("cancellations by reason", "cancellations_by_reason"),
    ("cancellations by initiator", "cancellations_by_initiator"),
    ("cancellations by cancel reason", "cancellations_by_cancel_reason"),
    ("after-sales cases by kind", "after_sales_opened"),
    ("after-sales rate by kind", "after_sales_rate"),
    ("top SKUs by units", "top_sku_units"),
    ("top SKUs by sales", "top_sku_sales"),
)
_RATES = {"payment_conversion", "late_dispatch_rate", "delivery_failure_rate", "after_sales_rate"}


def table(latest: Latest, granularity: str, zone_of: Callable[[str], tzinfo], region: str | None = None,
          shop: str | None = None) -> str:
    """Each region's latest window: its region-wide row, then its shops; then the breakdowns of
    the region-wide rows (and of the shop, when one is asked for)."""
    chosen = select(latest, granularity, region, shop)
    if not chosen:
        return f"no {granularity} figures" + (f" for {region or ''} {shop or ''}".rstrip() if region or shop else "")
    newest: dict[str, int] = {}
    for row in chosen:
        newest[row.region] = max(newest.get(row.region, row.window_start), row.window_start)
    shown = sorted(((row, metrics) for row, metrics in chosen.items() if row.window_start == newest[row.region]),
                   key=lambda item: (item[0].region, item[0].shop_id is not None, item[0].shop_id or ""))
    lines = _aligned([_COLUMNS] + [_cells(row, metrics, zone_of) for row, metrics in shown])
    for row, metrics in shown:
        if row.shop_id is None or shop is not None:
            lines += ["", f"{row.region} {_shop(row)}, {granularity} {label(row, zone_of)}:"]
            lines += [f"  {name:27} {_listed(metric, metrics[metric])}"
                      for name, metric in _DETAILS if metric in metrics]
    return "\n".join(lines)


def _shop(row: WindowRow) -> str:
    return row.shop_id if row.shop_id is not None else "all shops"


def _cells(row: WindowRow, metrics: Metrics, zone_of) -> tuple[str, ...]:
    def one(metric: str) -> str:
        found = metrics.get(metric)
        return _shown(metric, found[0][1]) if found else "-"

    def money(metric: str) -> str:
        return " ".join(f"{currency} {value}" for currency, value in metrics.get(metric, [])) or "-"

    after_sales = metrics.get("after_sales_rate")
    return (row.region, _shop(row), label(row, zone_of), one("orders_created"), one("orders_paid"),
            one("payment_conversion"), money("gmv"), money("average_order_value"), one("cancellations"),
            one("late_dispatch_rate"), one("delivery_failure_rate"), one("average_rating"),
            _shown("after_sales_rate", str(sum(Decimal(v) for _, v in after_sales))) if after_sales else "-")


def _shown(metric: str, value: str) -> str:
    return f"{Decimal(value) * 100:.1f}%" if metric in _RATES else value


def _listed(metric: str, found: list) -> str:
    if metric == "top_sku_sales":
        found = [(dimension.replace(":", " ", 1), value) for dimension, value in found]
    return ", ".join(f"{dimension} {_shown(metric, value)}" for dimension, value in found)


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


# --- the chart ------------------------------------------------------------------------------------------------------

WIDTH, HEIGHT = 960, 620
MAX_SLOTS = 400  # the most recent windows drawn; bars thinner than a couple of pixels show nothing
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def write_chart(path: Path, latest: Latest, granularity: str, zone_of: Callable[[str], tzinfo],
                region: str | None = None, shop: str | None = None) -> int:
    """Orders created and paid, and GMV per currency, per window on a time axis without gaps;
    returns the number of windows drawn. Without a shop, the region-wide rows of the chosen
    regions are added up per window (a DAY: the same local date)."""
    points: dict[int, dict] = defaultdict(lambda: {"created": 0, "paid": 0, "gmv": defaultdict(Decimal)})
    for row, metrics in select(latest, granularity, region, shop).items():
        if shop is None and row.shop_id is not None:
            continue
        point = points[_slot(row, zone_of)]
        point["created"] += sum(int(v) for _, v in metrics.get("orders_created", []))
        point["paid"] += sum(int(v) for _, v in metrics.get("orders_paid", []))
        for currency, value in metrics.get("gmv", []):
            point["gmv"][currency] += Decimal(value)
    scope = " ".join(part for part in (region, shop) if part) or "all regions"
    title = f"orderflow: orders and GMV per {granularity.lower()}, {scope}"
    slots: list[int] = []
    if points:
        step = _STEP[granularity]
        first = max(min(points), max(points) - (MAX_SLOTS - 1) * step)
        slots = list(range(first, max(points) + 1, step))
        if first > min(points):
            title += f" (the last {MAX_SLOTS})"
    labels = [_slot_label(granularity, slot) for slot in slots]
    currencies = sorted({currency for point in points.values() for currency in point["gmv"]})
    shapes = [("text", WIDTH / 2, 30, title, "#222", "middle", 18)]
    shapes += _panel((70, 70, WIDTH - 100, 210), "orders", labels, [
        ("created", _PALETTE[0], [points[slot]["created"] for slot in slots], "bar"),
        ("paid", _PALETTE[1], [points[slot]["paid"] for slot in slots], "line"),
    ])
    shapes += _panel((70, 360, WIDTH - 100, 210), "GMV", labels, [
        (currency, _PALETTE[(n + 2) % len(_PALETTE)], [float(points[slot]["gmv"].get(currency, 0)) for slot in slots],
         "line")
        for n, currency in enumerate(currencies)
    ])
    if path.suffix.lower() == ".png":
        _write_png(path, shapes)
    else:
        head = f'<meta charset="utf-8"><title>{html.escape(title)}</title>'
        path.write_text(f'<!doctype html>\n<html><head>{head}</head>\n<body style="margin:0">\n{_svg(shapes)}\n'
                        '</body></html>\n', encoding="utf-8")
    return len(slots)


def _panel(box: tuple, title: str, labels: list[str], series: list[tuple]) -> list[tuple]:
    """Shapes of one chart: y grid with values, bars or lines per series, x labels, legend."""
    x0, y0, width, height = box
    top = _nice(max((v for *_, values, _ in series for v in values), default=0))
    shapes: list[tuple] = [("text", x0, y0 - 12, title, "#222", "start", 14)]
    for i in range(5):
        y = y0 + height - height * i / 4
        shapes.append(("line", [(x0, y), (x0 + width, y)], "#ddd", 1))
        shapes.append(("text", x0 - 6, y + 4, f"{top * i / 4:g}", "#555", "end", 11))
    slot = width / max(len(labels), 1)

    def at(n: int, value: float) -> tuple[float, float]:
        return x0 + slot * (n + 0.5), y0 + height - height * value / top

    for name, color, values, kind in series:
        if kind == "bar":
            shapes += [("rect", at(n, v)[0] - slot * 0.3, at(n, v)[1], slot * 0.6, height * v / top, color)
                       for n, v in enumerate(values)]
        else:
            points = [at(n, v) for n, v in enumerate(values)]
            if len(points) > 1:
                shapes.append(("line", points, color, 2))
            shapes += [("rect", x - 2.5, y - 2.5, 5, 5, color) for x, y in points]
    step = max(1, -(-len(labels) // 8))  # at most 8 labels under the axis
    shapes += [("text", at(n, 0)[0], y0 + height + 16, text, "#555", "middle", 11)
               for n, text in enumerate(labels) if n % step == 0]
    for n, (name, color, *_rest) in enumerate(series):
        x = x0 + width - 110 * (len(series) - n)
        shapes += [("rect", x, y0 - 22, 12, 12, color), ("text", x + 16, y0 - 12, name, "#222", "start", 12)]
    return shapes


def _nice(value: float) -> float:
    """A round top for an axis quartered by grid lines: 1, 2, 4 or 8 times a power of ten, at least value."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 4, 8, 10) if m * magnitude >= value)


def _svg(shapes: list[tuple]) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>']
    for shape in shapes:
        kind, *args = shape
        if kind == "rect":
            x, y, w, h, color = args
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}"/>')
        elif kind == "line":
            points, color, width = args
            coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{color}" stroke-width="{width}"/>')
        else:
            x, y, text, color, anchor, size = args
            parts.append(f'<text x="{x:.1f}" y="{y:.1f}" fill="{color}" font-size="{size}" '
                         f'text-anchor="{anchor}">{html.escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _write_png(path: Path, shapes: list[tuple]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}  # baseline-aligned, as SVG text is
    for shape in shapes:
        kind, *args = shape
        if kind == "rect":
            x, y, w, h, color = args
            draw.rectangle([x, y, x + w, y + h], fill=color)
        elif kind == "line":
            points, color, width = args
            draw.line(points, fill=color, width=width)
        else:
            x, y, text, color, anchor, size = args
            draw.text((x, y), text, fill=color, font=ImageFont.load_default(size=size), anchor=anchors[anchor])
    image.save(path, "PNG")
