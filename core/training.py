"""Train the course's model: ``DictVectorizer`` + a regressor in one sklearn ``Pipeline``.

The target is the ride's duration (the course's model) or its recorded tip; both use the
same features, the ones a ride event carries when the ride starts (zones and distance).
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.metrics import root_mean_squared_error
from sklearn.pipeline import Pipeline, make_pipeline

from deploy_modes.core.artifact import save_model
from deploy_modes.core.data import read_trips
from deploy_modes.core.errors import DeployError
from deploy_modes.core.features import (
    FEATURE_SPEC,
    MAX_DURATION_MIN,
    MIN_DURATION_MIN,
    duration_minutes,
    feature_dicts,
    in_duration_range,
)
from deploy_modes.core.naming import DURATION, MODEL_NAMES, TARGETS, TIP_AMOUNT
from deploy_modes.core.tlc import DROPOFF, PICKUP, REQUIRED_COLUMNS
from deploy_modes.core.validation import invalid_reasons

__all__ = [
    "MAX_TIP",
    "REGRESSORS",
    "TARGET_SPECS",
    "TrainingResult",
    "make_regressor",
    "prepare",
    "train_model",
    "unit_label",
]

_RANGE = f"{MIN_DURATION_MIN:g}..{MAX_DURATION_MIN:g}"
_MONTH_IN_NAME = re.compile(r"(\d{4}-\d{2})\.parquet$")
MAX_TIP = 100.0  # dollars; above it a recorded tip is a keying error, as negatives are refunds
# What each target's manifest records: the same features, the target's unit and range.
TARGET_SPECS: dict[str, dict[str, Any]] = {
    DURATION: FEATURE_SPEC,
    TIP_AMOUNT: {
        **FEATURE_SPEC,
        "target": TIP_AMOUNT,
        "target_unit": "dollars",
        "target_range": [0.0, MAX_TIP],
    },
}
REGRESSORS: dict[str, Callable[[], Any]] = {
    "linear": LinearRegression,
    "ridge": lambda: Ridge(alpha=1.0),
    "lasso": lambda: Lasso(alpha=0.001, max_iter=5_000),
    "random_forest": lambda: RandomForestRegressor(
        n_estimators=20, max_depth=12, min_samples_leaf=5, n_jobs=-1, random_state=0
    ),
}


@dataclass
class TrainingResult:
    """What training produced: the pipeline, its manifest and where it was written."""

    pipeline: Pipeline
    manifest: dict[str, Any]
    out: str


def unit_label(target: str) -> str:
    """Return the short unit of a target's values, as messages print it (``min``, ``dollars``)."""
    unit = str(TARGET_SPECS[target]["target_unit"])
    return "min" if unit == "minutes" else unit


def make_regressor(name: str) -> Any:
    """Return a fresh regressor by registry name or dotted path (``sklearn.svm.LinearSVR``)."""
    if name in REGRESSORS:
        return REGRESSORS[name]()
    module_name, _, attr = name.rpartition(".")
    factory = None
    if module_name:
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError, ValueError):
            factory = None
    # Only classes with fit/predict: a dotted path must never run an arbitrary function.
    if isinstance(factory, type) and all(hasattr(factory, m) for m in ("fit", "predict")):
        try:
            return factory()
        except Exception as exc:  # e.g. a class that needs constructor arguments
            raise DeployError(
                f"regressor {name} cannot be created without arguments: {exc}"
            ) from exc
    known = ", ".join(sorted(REGRESSORS))
    raise DeployError(
        f"unknown regressor {name!r}: choose one of {known}, or give a dotted path to an "
        "sklearn-style regressor class (e.g. sklearn.linear_model.HuberRegressor)"
    )


def prepare(
    frame: pd.DataFrame, target: str = DURATION
) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, int]]:
    """Return feature dicts, target values and drop counts after the course's 1..60 min filter.

    Tips are learnt from the same rides as durations, less those whose recorded tip is missing,
    negative (a refund) or above :data:`MAX_TIP`.
    """
    duration = duration_minutes(frame, PICKUP, DROPOFF)
    reasons = invalid_reasons(
        frame["PULocationID"].to_numpy("float64", na_value=np.nan),
        frame["DOLocationID"].to_numpy("float64", na_value=np.nan),
        frame["trip_distance"].to_numpy("float64", na_value=np.nan),
    )
    bad = np.zeros(len(frame), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    out_of_range = ~bad & ~in_duration_range(duration)
    keep = ~bad & ~out_of_range.to_numpy()
    drops = {name: int(mask.sum()) for name, mask in reasons.items()}
    drops["duration_out_of_range"] = int(out_of_range.sum())
    values = duration.to_numpy("float64")
    if target == TIP_AMOUNT:
        values = frame[TIP_AMOUNT].to_numpy("float64", na_value=np.nan)
        # NaN compares False, so a missing tip is out of range too.
        tip_out = keep & ~((values >= 0.0) & (values <= MAX_TIP))
        drops["tip_out_of_range"] = int(tip_out.sum())
        keep &= ~tip_out
    kept = frame.loc[keep]
    return feature_dicts(kept), values[keep], drops


def _month_info(path: str, rows: int, used: int, drops: dict[str, int]) -> dict[str, Any]:
    name = PurePosixPath(path).name
    match = _MONTH_IN_NAME.search(name)
    return {
        "path": path,
        "file": name,
        "month": match.group(1) if match else None,
        "rows": rows,
        "rows_used": used,
        "rows_dropped": drops,
    }


def _read_month(
    path: str, say: Callable[[str], None], target: str
) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, Any]]:
    """Return a month's features, targets and manifest entry; refuse a month with no ride."""
    say(f"reading {path}")
    frame = read_trips(path, [*REQUIRED_COLUMNS, TIP_AMOUNT] if target == TIP_AMOUNT else None)
    features, values, drops = prepare(frame, target)
    if len(values) == 0:
        tip = f" and a recorded tip of 0..{MAX_TIP:g} dollars" if target == TIP_AMOUNT else ""
        raise DeployError(f"{path} has no ride with a duration of {_RANGE} minutes{tip}")
    return features, values, _month_info(path, len(frame), len(values), drops)


def train_model(
    train_path: str | Path,
    val_path: str | Path,
    out: str | Path,
    regressor: str = "linear",
    progress: Callable[[str], None] | None = None,
    target: str = DURATION,
) -> TrainingResult:
    """Fit on one month, validate on the next, save the artifact and return the result."""
    say = progress or (lambda _msg: None)
    if target not in TARGETS:  # fail fast, before reading data
        raise DeployError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    estimator = make_regressor(regressor)  # fail fast on an unknown name, before reading data
    started = time.perf_counter()
    train_path, val_path = str(train_path), str(val_path)  # a local path or an s3:// URI
    x_train, y_train, train_info = _read_month(train_path, say, target)
    x_val, y_val, val_info = _read_month(val_path, say, target)

    say(f"fitting {regressor} on {len(y_train):,} rides")
    pipeline = make_pipeline(DictVectorizer(), estimator)
    try:
        pipeline.fit(x_train, y_train)
    except (TypeError, ValueError) as exc:  # e.g. an estimator that refuses sparse input
        raise DeployError(f"regressor {regressor} failed to fit: {exc}") from exc
    rmse = float(root_mean_squared_error(y_val, pipeline.predict(x_val)))
    train_rmse = float(root_mean_squared_error(y_train, pipeline.predict(x_train)))
    spec = TARGET_SPECS[target]
    metadata = {
        "name": MODEL_NAMES[target],
        "regressor": regressor,
        "estimator": f"{type(estimator).__module__}.{type(estimator).__name__}",
        "features": spec,
        "training": {
            "train": train_info,
            "validation": val_info,
            "seconds": round(time.perf_counter() - started, 3),
        },
        "metrics": {"val_rmse": rmse, "train_rmse": train_rmse},
    }
    say(f"validation RMSE {rmse:.3f} {unit_label(target)}; saving to {out}")
    manifest = save_model(pipeline, out, metadata)
    return TrainingResult(pipeline, manifest, str(out))
