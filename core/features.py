"""The model's features: the course's ``PU_DO`` pair and ``trip_distance``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "CATEGORICAL",
    "FEATURE_SPEC",
    "MAX_DURATION_MIN",
    "MIN_DURATION_MIN",
    "NUMERICAL",
    "duration_minutes",
    "feature_dicts",
    "in_duration_range",
    "ride_features",
]

CATEGORICAL = ["PU_DO"]
NUMERICAL = ["trip_distance"]
MIN_DURATION_MIN = 1.0
MAX_DURATION_MIN = 60.0

FEATURE_SPEC: dict[str, Any] = {
    "categorical": CATEGORICAL,
    "numerical": NUMERICAL,
    "derived": {"PU_DO": "f'{PULocationID}_{DOLocationID}'"},
    "target": "duration",
    "target_unit": "minutes",
    "target_range": [MIN_DURATION_MIN, MAX_DURATION_MIN],
}


def ride_features(pu: int, do: int, distance: float) -> dict[str, Any]:
    """Return the feature dict of one ride, exactly as the course's ``prepare_features``."""
    return {"PU_DO": f"{pu}_{do}", "trip_distance": distance}


def in_duration_range(minutes: np.ndarray | pd.Series) -> np.ndarray | pd.Series:
    """Return the mask of the course's filter: durations of 1..60 minutes, both included.

    A missing duration (NaN) is out of range. Works on numpy arrays and pandas series alike.
    """
    return (minutes >= MIN_DURATION_MIN) & (minutes <= MAX_DURATION_MIN)


def duration_minutes(frame: pd.DataFrame, pickup: str, dropoff: str) -> pd.Series:
    """Return ride durations in minutes from the pickup and dropoff timestamps."""
    return (frame[dropoff] - frame[pickup]).dt.total_seconds() / 60.0


def feature_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return feature dicts for a frame of valid rides (used for training, not scoring)."""
    pu_do = (
        frame["PULocationID"].astype("int64").astype(str)
        + "_"
        + frame["DOLocationID"].astype("int64").astype(str)
    )
    distance = frame["trip_distance"].astype("float64")
    return [
        {"PU_DO": key, "trip_distance": float(dist)}
        for key, dist in zip(pu_do.tolist(), distance.tolist(), strict=True)
    ]
