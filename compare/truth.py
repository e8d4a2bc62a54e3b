"""Whether every mode gave the model's own prediction: the reference scorer's truth check.

Agreement between the modes proves they share one path, not that the path is right (they
once shared a wrong one). Here the compared rides are scored again by
:mod:`deploy_modes.core.reference` (``pipeline.predict``, in a process of its own) and each
mode's answers are checked against that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy_modes.compare.result import ModeResult
from deploy_modes.compare.rides import RideSet
from deploy_modes.core.artifact import Trust
from deploy_modes.core.reference import (
    REFERENCE_COLUMN,
    Agreement,
    agreement,
    score_in_separate_process,
)

__all__ = ["Truth", "reference_predictions", "truth", "write_rides"]


@dataclass
class Truth:
    """Each mode's distance from the reference: the largest gap and how many rides exceed it."""

    by_mode: dict[str, Agreement] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Return whether every mode is within the tolerance of the reference on every ride."""
        return all(a.holds for a in self.by_mode.values())

    @property
    def max_abs_diff(self) -> float:
        """Return the largest gap of any mode (inf when a prediction was NaN)."""
        return max((a.max_abs_diff for a in self.by_mode.values()), default=0.0)

    def wrong(self) -> dict[str, Agreement]:
        """Return the modes that disagree with the reference."""
        return {mode: a for mode, a in self.by_mode.items() if not a.holds}


def write_rides(rides: RideSet, path: Path) -> Path:
    """Write the compared rides (ride_id and the three ride fields) as parquet; return ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "ride_id": pa.array(rides.ride_ids, pa.string()),
            "PULocationID": pa.array(np.asarray(rides.pu, dtype="int64")),
            "DOLocationID": pa.array(np.asarray(rides.do, dtype="int64")),
            "trip_distance": pa.array(np.asarray(rides.distance, dtype="float64")),
        }
    )
    pq.write_table(table, path)
    return path


def reference_predictions(
    location: str, rides: RideSet, workdir: Path, trust: Trust
) -> dict[str, float]:
    """Return the model's own prediction for every ride, by ride_id, from a separate process."""
    import pyarrow.parquet as pq

    source = write_rides(rides, workdir / "reference-rides.parquet")
    out = workdir / "reference.parquet"
    score_in_separate_process(location, source, out, trust=trust)
    table = pq.read_table(out, columns=["ride_id", REFERENCE_COLUMN])
    return dict(
        zip(
            table.column("ride_id").to_pylist(),
            table.column(REFERENCE_COLUMN).to_pylist(),
            strict=True,
        )
    )


def truth(results: list[ModeResult], reference: dict[str, float]) -> Truth:
    """Compare every answer of every mode with the reference (missing ones count elsewhere)."""
    by_mode = {}
    for result in results:
        ids = [ride_id for ride_id in result.predictions if ride_id in reference]
        unknown = len(result.predictions) - len(ids)  # an answer for a ride never sent
        scored = [result.predictions[ride_id] for ride_id in ids]
        found = agreement(scored, [reference[ride_id] for ride_id in ids])
        if unknown:
            found = Agreement(found.rides + unknown, math.inf, found.over_tolerance + unknown)
        by_mode[result.mode] = found
    return Truth(by_mode)
