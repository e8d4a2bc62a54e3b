"""The model service: one ride, many rides, or whole arrays, all equal to ``pipeline.predict``.

For a linear estimator behind the ``DictVectorizer`` the service precomputes a dense
``PU x DO`` table of the ``PU_DO`` coefficients, so a prediction is one table lookup, one
multiply and one add: no dict per row, no sparse matrix. Other estimators get a sparse matrix
built straight from the vectorizer's vocabulary (no dicts either) and their own ``predict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.features import ride_features
from deploy_modes.core.validation import MAX_ZONE, MIN_ZONE, Ride, validate_ride

__all__ = ["ModelService", "Prediction"]

_TABLE_SIZE = MAX_ZONE + 1  # zone IDs index the table directly; row/column 0 stays unused
_SPARSE_CHUNK_ROWS = 262_144
_DENSE_CHUNK_CELLS = 8_000_000  # a dense chunk stays under ~64 MB of float64


@dataclass(frozen=True, slots=True)
class Prediction:
    """One ride's outcome in a batch: a duration, or the validation error that stopped it."""

    index: int
    duration: float | None = None
    error: RideValidationError | None = None
    ride_id: Any = None


class ModelService:
    """Predict ride durations with one loaded model; shared by every mode."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.pipeline: Pipeline = model.pipeline
        self.vectorizer: DictVectorizer = self.pipeline.steps[0][1]
        self.estimator = self.pipeline.steps[-1][1]
        self._simple = len(self.pipeline.steps) == 2 and self._features_are_course_features()
        self._table: np.ndarray | None = None
        width = max(len(self.vectorizer.vocabulary_), 1)
        self._chunk_rows = (
            _SPARSE_CHUNK_ROWS if self.vectorizer.sparse else max(_DENSE_CHUNK_CELLS // width, 1)
        )
        if self._simple:
            self._columns = _pudo_columns(self.vectorizer.vocabulary_)
            if _is_linear(self.estimator):
                self._build_linear_table()

    @property
    def version(self) -> str:
        """Return the model version (from the manifest)."""
        return self.model.version

    @property
    def name(self) -> str:
        """Return the model name (from the manifest)."""
        return self.model.name

    @property
    def fast_path(self) -> str:
        """Return the prediction path: ``linear-table``, ``sparse`` or ``dict``."""
        if self._table is not None:
            return "linear-table"
        return "sparse" if self._simple else "dict"

    def _features_are_course_features(self) -> bool:
        names = self.vectorizer.vocabulary_
        return all(name == "trip_distance" or name.startswith("PU_DO=") for name in names)

    def _build_linear_table(self) -> None:
        coef = np.asarray(self.estimator.coef_, dtype="float64").ravel()
        vocab = self.vectorizer.vocabulary_
        known = self._columns >= 0
        self._flat = np.zeros(_TABLE_SIZE * _TABLE_SIZE, dtype="float64")
        self._flat[known] = coef[self._columns[known]]
        self._table = self._flat.reshape(_TABLE_SIZE, _TABLE_SIZE)
        self._w_distance = float(coef[vocab["trip_distance"]]) if "trip_distance" in vocab else 0.0
        self._intercept = float(np.asarray(self.estimator.intercept_).ravel()[0])

    # -- one ride --------------------------------------------------------------------------
    def predict_ride(self, ride: Ride) -> float:
        """Return the predicted duration in minutes of one validated ride."""
        if self._table is not None:
            # Same order of operations as the sparse dot product: PU_DO term, distance, intercept.
            return float(
                (self._table[ride.pu, ride.do] + self._w_distance * ride.distance) + self._intercept
            )
        return float(self.predict_arrays([ride.pu], [ride.do], [ride.distance])[0])

    def predict_one(self, payload: object) -> float:
        """Validate a JSON-like ride and return its duration; raises RideValidationError."""
        return self.predict_ride(validate_ride(payload))

    # -- many rides ------------------------------------------------------------------------
    def predict_many(self, payloads: Sequence[object]) -> list[Prediction]:
        """Validate and predict many rides; an invalid ride is reported, not fatal."""
        rides: list[Ride] = []
        positions: list[int] = []
        results: list[Prediction | None] = [None] * len(payloads)
        for index, payload in enumerate(payloads):
            ride_id = payload.get("ride_id") if isinstance(payload, Mapping) else None
            try:
                rides.append(validate_ride(payload))
                positions.append(index)
            except RideValidationError as exc:
                results[index] = Prediction(index, error=exc, ride_id=ride_id)
        if rides:
            durations = self.predict_arrays(
                np.fromiter((r.pu for r in rides), dtype="int64", count=len(rides)),
                np.fromiter((r.do for r in rides), dtype="int64", count=len(rides)),
                np.fromiter((r.distance for r in rides), dtype="float64", count=len(rides)),
            )
            for index, duration in zip(positions, durations.tolist(), strict=True):
                payload = payloads[index]
                ride_id = payload.get("ride_id") if isinstance(payload, Mapping) else None
                results[index] = Prediction(index, duration=duration, ride_id=ride_id)
        return [r for r in results if r is not None]

    # -- arrays (batch) --------------------------------------------------------------------
    def predict_arrays(
        self,
        pu: Iterable[int] | np.ndarray,
        do: Iterable[int] | np.ndarray,
        distance: Iterable[float] | np.ndarray,
    ) -> np.ndarray:
        """Return durations for arrays of *valid* rides (zones 1..265, finite distances)."""
        pu = np.asarray(pu, dtype="int64")
        do = np.asarray(do, dtype="int64")
        distance = np.asarray(distance, dtype="float64")
        if not pu.shape == do.shape == distance.shape or pu.ndim != 1:
            raise ValueError("pu, do and distance must be 1-d arrays of the same length")
        if len(pu) == 0:
            return np.empty(0, dtype="float64")
        # Cheap guard: an out-of-range zone would silently index another zone's coefficient.
        if min(pu.min(), do.min()) < MIN_ZONE or max(pu.max(), do.max()) > MAX_ZONE:
            raise ValueError(f"zone IDs must be {MIN_ZONE}..{MAX_ZONE}: validate rows first")
        if self._table is not None:
            out = self._flat[pu * _TABLE_SIZE + do]
            out += self._w_distance * distance
            out += self._intercept
            return out
        # Other models score in chunks, so a dense vectorizer (or the dict path) never builds
        # a rows x vocabulary matrix for a whole month at once.
        chunk = self._chunk_rows
        parts = [
            self._predict_chunk(pu[i : i + chunk], do[i : i + chunk], distance[i : i + chunk])
            for i in range(0, len(pu), chunk)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _predict_chunk(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        if self._simple:
            matrix: Any = self._sparse(pu, do, distance)
            if not self.vectorizer.sparse:  # the estimator was fitted on dense input
                matrix = matrix.toarray()
            return np.asarray(self.estimator.predict(matrix), dtype="float64")
        dicts = [
            ride_features(int(p), int(d), float(x))
            for p, d, x in zip(pu, do, distance, strict=True)
        ]
        return np.asarray(self.pipeline.predict(dicts), dtype="float64")

    def _sparse(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> sp.csr_matrix:
        """Build the matrix ``DictVectorizer.transform`` would, without a dict per row."""
        vocab = self.vectorizer.vocabulary_
        n = len(pu)
        cat = self._columns[pu * _TABLE_SIZE + do]
        known = cat >= 0
        dist_col = vocab.get("trip_distance")
        rows = [np.flatnonzero(known)]
        cols = [cat[known]]
        vals = [np.ones(int(known.sum()))]
        if dist_col is not None:
            rows.append(np.arange(n))
            cols.append(np.full(n, dist_col))
            vals.append(distance)
        matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, len(vocab)),
        )
        matrix.sort_indices()
        return matrix


def _pudo_columns(vocab: Mapping[str, int]) -> np.ndarray:
    """Map each ``pu * 266 + do`` to its ``PU_DO=pu_do`` column, or -1 if never seen."""
    lookup = np.full(_TABLE_SIZE * _TABLE_SIZE, -1, dtype="int64")
    for name, column in vocab.items():
        if name.startswith("PU_DO="):
            pu, _, do = name[len("PU_DO=") :].partition("_")
            if pu.isdigit() and do.isdigit() and int(pu) < _TABLE_SIZE and int(do) < _TABLE_SIZE:
                lookup[int(pu) * _TABLE_SIZE + int(do)] = column
    return lookup


def _is_linear(estimator: Any) -> bool:
    coef = getattr(estimator, "coef_", None)
    return (
        type(estimator).__module__.startswith("sklearn.linear_model")
        and coef is not None
        and np.asarray(coef).ndim == 1
        and hasattr(estimator, "intercept_")
    )
