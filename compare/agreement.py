"""Whether every ride got the same prediction from every mode."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from deploy_modes.compare.result import ModeResult
from deploy_modes.compare.rides import RideSet

__all__ = ["TOLERANCE", "Agreement", "agreement"]

TOLERANCE = 1e-9  # predictions of one model must agree to this (they come from one code path)


@dataclass
class Agreement:
    """How many rides disagree, and the first few of them (the list is capped, the count not)."""

    compared: int
    max_diff: float
    mismatch_count: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether all modes agree on every ride."""
        return self.mismatch_count == 0


def agreement(rides: RideSet, results: list[ModeResult], limit: int = 50) -> Agreement:
    """Compare every ride's predictions across modes; a missing one is a mismatch too."""
    mismatches: list[dict[str, Any]] = []
    max_diff = 0.0
    total = 0
    for ride_id in rides.ride_ids:
        values = {r.mode: r.predictions.get(ride_id) for r in results}
        present = [v for v in values.values() if v is not None]
        missing = [mode for mode, v in values.items() if v is None]
        diff = max(present) - min(present) if present else math.nan
        if present and math.isfinite(diff):
            max_diff = max(max_diff, diff)
        if missing or not math.isfinite(diff) or diff > TOLERANCE:
            total += 1
            if len(mismatches) < limit:
                reason = f"missing in {', '.join(missing)}" if missing else f"differ by {diff:.3g}"
                mismatches.append({"ride_id": ride_id, **values, "reason": reason})
    return Agreement(
        compared=len(rides), max_diff=max_diff, mismatch_count=total, mismatches=mismatches
    )
