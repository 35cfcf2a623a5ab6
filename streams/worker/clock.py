"""Clocks for the live worker. The core never reads time; the shell passes it in.

`accelerated:FACTOR:ORIGIN_MS` runs simulated time FACTOR times faster than the
wall clock from the wall time ORIGIN_MS on (where both agree), so a 48 h rule
fires in seconds. Every process given the same spec reads the same time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class SystemClock:
    def now(self) -> int:
        return wall_ms()


@dataclass(frozen=True)
class AcceleratedClock:
    factor: float
    origin: int

    def now(self) -> int:
        return self.origin + int((wall_ms() - self.origin) * self.factor)

    def spec(self) -> str:
        return f"accelerated:{self.factor:g}:{self.origin}"


def clock_from_spec(spec: str) -> SystemClock | AcceleratedClock:
    if spec in ("", "system"):
        return SystemClock()
    kind, _, rest = spec.partition(":")
    factor, _, origin = rest.partition(":")
    try:
        if kind == "accelerated":
            return AcceleratedClock(float(factor), int(origin) if origin else wall_ms())
    except ValueError:
        pass
    raise ValueError(f"bad clock {spec!r}: use 'system' or 'accelerated:FACTOR[:ORIGIN_MS]'")
