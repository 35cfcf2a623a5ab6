"""Region policy: how long each step of the lifecycle may take, per region.

Loaded from a TOML file (the packaged ``region_policy.toml`` documents every
setting and holds the defaults); durations never appear as literals in the rules.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> int:
    """'15m' -> 900000 (milliseconds)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number and a unit (ms, s, m, h, d), e.g. '48h'")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


@dataclass(frozen=True)
class RegionRules:
    region: str
    payment_reminders: tuple[int, ...]
    unpaid_timeout: int
    cancel_request_timeout: int
    ship_by: int
    redelivery_window: int
    redelivery_dispatch_business_days: int
    auto_confirm: int
    shipment_stalled: int
    orphan_grace: int
    after_sales_window: int
    retention: int
    timezone: str = "UTC"
    holidays: str = ""  # country code of the public-holiday calendar
    remorse_period: int = 0  # a paid order is ON_HOLD this long first (0: no hold)
    after_sales_response: int = 48 * 3_600_000  # the seller's time to answer an after-sales case
    return_ship_window: int = 7 * 86_400_000  # the buyer's time to ship a return back once approved
    # The reasons a seller or an operator may give for a cancel; None: any reason.
    cancel_reasons: dict[str, tuple[str, ...]] | None = None

    def cancel_reason_problem(self, initiator: str, reason: str) -> str | None:
        """Why `reason` is not one the initiator (SELLER or OPERATOR) may give here, or None."""
        allowed = None if self.cancel_reasons is None else self.cancel_reasons.get(initiator, ())
        if allowed is None or reason in allowed:
            return None
        return (f"cancel reason {reason[:40]!r} is not in the {initiator.lower()} catalogue of region {self.region} "
                f"(one of {', '.join(allowed) or 'none'})")

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _calendar(self) -> holidays.HolidayBase | None:
        return holidays.country_holidays(self.holidays) if self.holidays else None

    def is_business_day(self, day) -> bool:
        weekend = self._calendar.weekend if self._calendar is not None else {5, 6}
        return day.weekday() not in weekend and not (self._calendar is not None and day in self._calendar)

    def add_business_days(self, start_ms: int, days: int) -> int:
        """The same local time of day, `days` working days later in the region's calendar."""
        local = datetime.fromtimestamp(start_ms / 1000, self._zone)
        naive = local.replace(tzinfo=None)
        counted = 0
        while counted < days:
            naive += timedelta(days=1)
            if self.is_business_day(naive.date()):
                counted += 1
        # Re-attach the zone so a DST change in between keeps the local time of day.
        return int(naive.replace(tzinfo=self._zone).timestamp() * 1000)


_DURATION_KEYS = (
    "unpaid_timeout", "cancel_request_timeout", "ship_by", "redelivery_window",
    "auto_confirm", "shipment_stalled", "orphan_grace", "after_sales_window", "retention",
)


# Settings added after the first policy files were written: without them, a policy behaves as before
# (RegionRules' defaults).
_LATER_DURATIONS = ("remorse_period", "after_sales_response", "return_ship_window")
_LATER_KEYS = (*_LATER_DURATIONS, "cancel_reasons")
CANCEL_INITIATORS = ("SELLER", "OPERATOR")  # whose cancels name a reason from the catalogue


def _catalogue(region: str, value) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or set(value) - set(CANCEL_INITIATORS) or any(
            not isinstance(reasons, list) or not all(isinstance(r, str) and r for r in reasons)
            for reasons in value.values()):
        raise ValueError(f"region policy {region}: cancel_reasons must map {' and/or '.join(CANCEL_INITIATORS)} "
                         "to lists of reasons")
    return {initiator: tuple(reasons) for initiator, reasons in value.items()}


def _merged(base: dict, overrides: dict) -> dict:
    """A region's settings: the default's, overridden; a catalogue per initiator (a region that lists
    its sellers' reasons keeps the default's list for operators)."""
    merged = {**base, **overrides}
    if isinstance(base.get("cancel_reasons"), dict) and isinstance(overrides.get("cancel_reasons"), dict):
        merged["cancel_reasons"] = {**base["cancel_reasons"], **overrides["cancel_reasons"]}
    return merged


def _rules(region: str, settings: dict) -> RegionRules:
    known = (set(_DURATION_KEYS) | set(_LATER_KEYS)
             | {"payment_reminders", "redelivery_dispatch_business_days", "timezone", "holidays"})
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"region policy {region}: unknown settings {sorted(unknown)}")
    try:
        return RegionRules(
            region=region,
            payment_reminders=tuple(sorted(parse_duration(d) for d in settings["payment_reminders"])),
            redelivery_dispatch_business_days=int(settings["redelivery_dispatch_business_days"]),
            timezone=settings.get("timezone", "UTC"),
            holidays=settings.get("holidays", ""),
            cancel_reasons=_catalogue(region, settings["cancel_reasons"]) if "cancel_reasons" in settings else None,
            **{key: parse_duration(settings[key]) for key in _DURATION_KEYS},
            **{key: parse_duration(settings[key]) for key in _LATER_DURATIONS if key in settings},
        )
    except KeyError as exc:
        raise ValueError(f"region policy {region}: missing setting {exc.args[0]}") from None


@dataclass(frozen=True)
class Limits:
    """How much one order may hold: each value is stored whole, so it must stay well below the
    changelog topic's largest message. An event that would cross a limit is dead-lettered."""
    events: int = 500  # events applied to one order (each id is kept to recognise redeliveries)
    held_events: int = 50  # events held for an order id that has not been created yet
    tracking_updates: int = 200  # entries in the tracking history
    after_sales_cases: int = 10
    rejected_ids: int = 64  # ids of the latest rejected events, to recognise their redeliveries
    order_bytes: int = 512 * 1024  # the order encoded as stored


def _limits(settings: dict) -> Limits:
    known = set(Limits.__dataclass_fields__)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"region policy [limits]: unknown settings {sorted(unknown)}")
    bad = [name for name, value in settings.items() if isinstance(value, bool) or not isinstance(value, int)
           or value < 1]
    if bad:
        raise ValueError(f"region policy [limits]: {', '.join(sorted(bad))} must be positive whole numbers")
    return Limits(**settings)


@dataclass(frozen=True)
class Policy:
    default: RegionRules
    regions: dict[str, RegionRules] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    def covers(self) -> str:
        """What the order tables hold, in words: views and exports say which orders they cover."""
        def kept(rules: RegionRules) -> str:
            return (f"finished ones for {rules.retention // _UNITS_MS['d']} days after they finished (completed "
                    f"ones after their {rules.after_sales_window // _UNITS_MS['d']}-day after-sales window)")
        by_rule: dict[str, list[str]] = {}
        for code, rules in sorted(self.regions.items()):
            by_rule.setdefault(kept(rules), []).append(code)
        if len(by_rule) == 1:
            return f"open orders, and {next(iter(by_rule))}"
        return "open orders, and " + "; ".join(f"in {', '.join(codes)}: {text}" for text, codes in by_rule.items())

    def for_region(self, region: str | None) -> RegionRules | None:
        """The region's rules, or None for a region the policy does not serve."""
        return self.regions.get(region or "")

    @classmethod
    def from_toml(cls, text: str, source: str = "policy") -> "Policy":
        data = tomllib.loads(text)
        base = data.get("default", {})
        regions = {
            code: _rules(code, _merged(base, overrides)) for code, overrides in data.get("regions", {}).items()
        }
        if not regions:
            raise ValueError(f"{source}: no [regions.XX] section: the policy serves no region")
        return cls(default=_rules("default", base), regions=regions, limits=_limits(data.get("limits", {})))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Policy":
        if path:
            return cls.from_toml(Path(path).read_text(), str(path))
        packaged = resources.files("orderflow.streams.lifecycle").joinpath("region_policy.toml").read_text()
        return cls.from_toml(packaged, "region_policy.toml")
