"""The features the peers compute, the course's ``prepare_features`` for a column of rides.

Each peer server loads the same pickled ``(DictVectorizer, regressor)`` pipeline the benchmark
trains and scores it the course's way: one feature dict per ride, then ``pipeline.predict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["MODEL_PICKLE", "feature_dicts"]

MODEL_PICKLE = "model.pkl"  # next to each peer's definition in its work folder


def feature_dicts(
    pu: Iterable[Any], do: Iterable[Any], distance: Iterable[Any]
) -> list[dict[str, Any]]:
    """Return the course's feature dict (``PU_DO``, ``trip_distance``) of each ride."""
    return [
        {"PU_DO": f"{int(p)}_{int(d)}", "trip_distance": float(km)}
        for p, d, km in zip(pu, do, distance, strict=True)
    ]
