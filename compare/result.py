"""What one mode did with the rides, and the protocol every mode x runtime runner follows."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from deploy_modes.compare.rides import RideSet

__all__ = ["Advance", "ModeResult", "ModeRunner", "ProgressFactory", "Say"]

Say = Callable[[str], None]
Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Advance]]


@dataclass
class ModeResult:
    """What one mode did with the rides: predictions by ride_id and its timings."""

    mode: str
    rides: int
    startup_s: float
    wall_s: float
    latencies_s: np.ndarray
    peak_rss_bytes: int
    predictions: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Return rides per second over the wall time."""
        return self.rides / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self) -> dict[str, float]:
        """Return p50/p95/p99 latency in seconds (NaN when nothing was measured)."""
        if self.latencies_s.size == 0:
            return {"p50": math.nan, "p95": math.nan, "p99": math.nan}
        p50, p95, p99 = np.percentile(self.latencies_s, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


class ModeRunner(Protocol):
    """One mode in one runtime: bring it up, send it every ride, take it down."""

    mode: str

    def run(self, rides: RideSet) -> ModeResult:
        """Score ``rides`` the way a user runs the mode; stop what it started, Ctrl-C too."""
        ...
