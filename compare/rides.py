"""The rides every mode gets: generated (seeded) or the first usable ones of a TLC month."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.core.errors import DeployError

__all__ = ["ID_PREFIX", "MAX_RIDES", "RIDE_MONTH", "RideSet", "prepare_rides"]

MAX_RIDES = 200_000  # the web mode sends one request per ride: more would take many minutes
RIDE_MONTH = "2021-03"
# The batch job names rides f"{year:04d}/{month:02d}_{row}"; the other modes get the same ids.
ID_PREFIX = "2021/03"
# Rides just inside the course's 1..60 minute filter, so float rounding cannot drop one.
_DURATION_MARGIN = 1e-6


@dataclass
class RideSet:
    """The N rides every mode gets: ids, columns, and the parquet month the batch job reads."""

    ride_ids: list[str]
    pu: np.ndarray
    do: np.ndarray
    distance: np.ndarray
    path: Path
    source: str
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.ride_ids)

    def payload(self, i: int) -> dict[str, Any]:
        """Return ride ``i`` as the course's web payload, with its ride_id."""
        return {
            "PULocationID": int(self.pu[i]),
            "DOLocationID": int(self.do[i]),
            "trip_distance": float(self.distance[i]),
            "ride_id": self.ride_ids[i],
        }

    def event(self, i: int) -> dict[str, Any]:
        """Return ride ``i`` as the course's Kinesis input event."""
        ride = self.payload(i)
        return {"ride": ride, "ride_id": ride.pop("ride_id")}


def _selectable(frame: Any) -> np.ndarray:
    """Return the mask of rows every mode scores: valid ride, 1..60 minute duration."""
    from deploy_modes.core.features import MAX_DURATION_MIN, MIN_DURATION_MIN
    from deploy_modes.core.validation import invalid_reasons

    pu = frame["PULocationID"].to_numpy(dtype="float64", na_value=np.nan)
    do = frame["DOLocationID"].to_numpy(dtype="float64", na_value=np.nan)
    distance = frame["trip_distance"].to_numpy(dtype="float64", na_value=np.nan)
    invalid = np.zeros(len(frame), dtype=bool)
    for mask in invalid_reasons(pu, do, distance).values():
        invalid |= mask
    pickup = frame["lpep_pickup_datetime"].to_numpy(dtype="datetime64[us]")
    dropoff = frame["lpep_dropoff_datetime"].to_numpy(dtype="datetime64[us]")
    minutes = (dropoff - pickup).astype("timedelta64[us]").astype("float64") / 60e6
    with np.errstate(invalid="ignore"):
        in_range = (minutes >= MIN_DURATION_MIN + _DURATION_MARGIN) & (
            minutes <= MAX_DURATION_MIN - _DURATION_MARGIN
        )
    return ~invalid & in_range & ~np.isnat(pickup) & ~np.isnat(dropoff)


def prepare_rides(count: int, seed: int, workdir: Path, source: str | None = None) -> RideSet:
    """Return ``count`` rides every mode scores (generated, or the first valid ones of a file)."""
    from deploy_modes.core.data import generate_month, read_trips

    if not 1 <= count <= MAX_RIDES:
        raise DeployError(f"--rides must be 1 to {MAX_RIDES:,}, got {count}")
    if source is not None:
        if not str(source).strip():
            raise DeployError("--input is empty: give a TLC parquet month")
        frame = read_trips(source)
        keep = _selectable(frame)
        label = str(source)
    else:
        # A generated month has ~3% rides outside the filter: ask for more, then cut.
        rows = count + count // 10 + 100
        while True:
            frame = generate_month(2021, 3, rows=rows, seed=seed)
            keep = _selectable(frame)
            if keep.sum() >= count:
                break
            rows *= 2
        label = f"generated ({RIDE_MONTH}, seed {seed})"
    positions = np.flatnonzero(keep)
    dropped_by_filter = int(len(frame) - len(positions)) if source is not None else 0
    if len(positions) == 0:
        raise DeployError(
            f"{label} has no ride every mode can score (valid zones and distance, 1..60 minutes)"
        )
    positions = positions[:count]
    chosen = frame.iloc[positions].reset_index(drop=True)
    path = workdir / f"green_tripdata_{RIDE_MONTH}.parquet"
    _write_rides(chosen, path)
    n = len(chosen)
    return RideSet(
        ride_ids=[f"{ID_PREFIX}_{i}" for i in range(n)],
        pu=chosen["PULocationID"].to_numpy(dtype="float64").astype("int64"),
        do=chosen["DOLocationID"].to_numpy(dtype="float64").astype("int64"),
        distance=chosen["trip_distance"].to_numpy(dtype="float64"),
        path=path,
        source=label,
        dropped=dropped_by_filter,
    )


def _write_rides(frame: Any, path: Path) -> None:
    """Write the rides with just the columns the batch job reads (ids are row positions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array(
                frame["lpep_pickup_datetime"].to_numpy(dtype="datetime64[us]")
            ),
            "lpep_dropoff_datetime": pa.array(
                frame["lpep_dropoff_datetime"].to_numpy(dtype="datetime64[us]")
            ),
            "PULocationID": pa.array(frame["PULocationID"].to_numpy(dtype="float64")),
            "DOLocationID": pa.array(frame["DOLocationID"].to_numpy(dtype="float64")),
            "trip_distance": pa.array(frame["trip_distance"].to_numpy(dtype="float64")),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
