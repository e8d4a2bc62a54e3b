"""The model service: one ride, many rides, or whole arrays, all equal to ``pipeline.predict``.

The features come from the model: :func:`~deploy_modes.core.schemes.scheme_for` reads the
vectorizer's vocabulary and says how to build a ride's features. Shortcuts are proven, not
assumed: at load the service checks each one against ``pipeline.predict`` on a probe set
(:mod:`deploy_modes.core.proof`) and takes the fastest that agrees within 1e-9:

- ``linear-table``: identity-link linear models only; a dense ``PU x DO`` table of the zone
  terms, so a prediction is one lookup, one multiply and one add;
- ``sparse``: the vectorizer's sparse matrix built straight from the vocabulary (no dict per
  row), then the pipeline's remaining steps;
- ``dict``: the pipeline's own ``predict`` on one feature dict per ride.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.naming import DURATION
from deploy_modes.core.proof import TOLERANCE, Probe, Proof, is_identity_linear, probe_rides, prove
from deploy_modes.core.schemes import TABLE_SIZE, FeatureScheme, scheme_for
from deploy_modes.core.validation import MAX_ZONE, MIN_ZONE, Ride, validate_ride

__all__ = ["ModelService", "Prediction"]

log = logging.getLogger(__name__)
_Score = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

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

    def __init__(self, model: LoadedModel, targets: Collection[str] = (DURATION,)) -> None:
        """Load ``model`` for scoring; refuse it unless it predicts one of ``targets``."""
        model.check_target(targets)
        self.model = model
        self.pipeline: Pipeline = model.pipeline
        self.vectorizer: DictVectorizer = self.pipeline.steps[0][1]
        self.estimator = self.pipeline.steps[-1][1]
        self.scheme: FeatureScheme = scheme_for(self.vectorizer.vocabulary_, model.source)
        self._rest = self.pipeline[1:]  # every step after the vectorizer
        self._unknown = self.scheme.unknown_pairs
        self._any_unknown = bool(self._unknown.any())
        self._unknown_lock = threading.Lock()
        self.unknown_rides = 0
        """Rides scored with no feature the model knows, i.e. its intercept (flagged, logged)."""
        self.unknown_listeners: list[Callable[[int], None]] = []
        """Called with each new count of such rides (e.g. the web service's metric counter)."""
        self._table: np.ndarray | None = None
        self._flat = np.zeros(0)
        self._w_distance = 0.0
        self._intercept = 0.0
        self._chunk_rows = (
            _SPARSE_CHUNK_ROWS
            if self.vectorizer.sparse
            else max(_DENSE_CHUNK_CELLS // max(self.scheme.width, 1), 1)
        )
        started = time.perf_counter()
        self.scoring_path, self.scoring_reason, self.proofs = self._choose_path()
        self.proof_seconds = time.perf_counter() - started

    @property
    def version(self) -> str:
        """Return the model version (from the manifest)."""
        return self.model.version

    @property
    def name(self) -> str:
        """Return the model name (from the manifest)."""
        return self.model.name

    @property
    def target(self) -> str:
        """Return what the model predicts: ``duration`` (minutes) or ``tip_amount`` (dollars)."""
        return self.model.target

    @property
    def fast_path(self) -> str:
        """Return the prediction path: ``linear-table``, ``sparse`` or ``dict``."""
        return self.scoring_path

    # -- the proof -------------------------------------------------------------------------
    def _choose_path(self) -> tuple[str, str, list[Proof]]:
        """Prove each shortcut on the probe set; return the path taken, why, and the proofs."""
        probe = probe_rides(self.scheme, self.pipeline, chunk_rows=self._chunk_rows)
        proofs: list[Proof] = []
        estimator = type(self.estimator).__name__
        linear = len(self.pipeline.steps) == 2 and is_identity_linear(self.estimator)
        if linear:
            self._build_linear_table()
            table = prove("linear-table", self._table_arrays, probe)
            proofs.append(table)
            if table.holds:
                return "linear-table", self._agrees(table, probe, f"{estimator} is linear"), proofs
            self._table = None
            log.warning("the linear table disagrees with predict (max |diff| %g)", table.max_diff)
        sparse = prove("sparse", self._chunked(self._sparse_arrays), probe)
        proofs.append(sparse)
        why_not = (
            "its table disagreed with predict"
            if linear
            else (
                f"{estimator} is not an identity-link linear model"
                if len(self.pipeline.steps) == 2
                else f"the pipeline has {len(self.pipeline.steps)} steps"
            )
        )
        if sparse.holds:
            return "sparse", self._agrees(sparse, probe, f"no table: {why_not}"), proofs
        log.warning(
            "the sparse build disagrees with predict (max |diff| %g): scoring with the "
            "pipeline's own predict",
            sparse.max_diff,
        )
        reason = (
            f"no shortcut agreed with predict within {TOLERANCE:g} "
            f"(sparse max |diff| {sparse.max_diff:g} on {len(probe):,} probe rides; {why_not}): "
            "scoring with the pipeline's own predict"
        )
        return "dict", reason, proofs

    def _agrees(self, proof: Proof, probe: Probe, why: str) -> str:
        return (
            f"{why}; equals predict on {len(probe):,} probe rides "
            f"(max |diff| {proof.max_diff:.3g} <= {TOLERANCE:g}; {self.scheme.name} features)"
        )

    def _build_linear_table(self) -> None:
        """Tabulate the zone terms of every pair: coef over the pair's features at distance 0."""
        coef = np.asarray(self.estimator.coef_, dtype="float64").ravel()
        zones = np.arange(TABLE_SIZE * TABLE_SIZE)
        pu, do = zones // TABLE_SIZE, zones % TABLE_SIZE
        distance_column = self.scheme.distance_column
        zone_coef = coef.copy()
        if distance_column is not None:
            zone_coef[distance_column] = 0.0
            self._w_distance = float(coef[distance_column])
        # Zones 0 are no ride's zones (the range guard refuses them); clip to build the matrix.
        grid = self.scheme.matrix(np.maximum(pu, MIN_ZONE), np.maximum(do, MIN_ZONE), pu * 0.0)
        self._flat = np.asarray(grid @ zone_coef, dtype="float64")
        self._table = self._flat.reshape(TABLE_SIZE, TABLE_SIZE)
        self._intercept = float(np.asarray(self.estimator.intercept_).ravel()[0])

    def _table_arrays(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        out = self._flat[pu * TABLE_SIZE + do]
        out += self._w_distance * distance
        out += self._intercept
        return out

    def _sparse_arrays(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        matrix: Any = self.scheme.matrix(pu, do, distance)
        if not self.vectorizer.sparse:  # the next step was fitted on dense input
            matrix = matrix.toarray()
        return np.asarray(self._rest.predict(matrix), dtype="float64")

    def _dict_arrays(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        dicts = [
            self.scheme.ride_features(p, d, x)
            for p, d, x in zip(pu.tolist(), do.tolist(), distance.tolist(), strict=True)
        ]
        return np.asarray(self.pipeline.predict(dicts), dtype="float64")

    def _note_unknown(self, count: int, pu: int, do: int) -> None:
        """Count rides the model knows nothing of; log at 1, 2, 4, 8, ... so logs stay short."""
        with self._unknown_lock:
            before = self.unknown_rides
            self.unknown_rides = before + count
        for listener in self.unknown_listeners:
            listener(count)
        if (self.unknown_rides).bit_length() > before.bit_length():
            log.warning(
                "%d ride(s) so far had no feature the model knows (e.g. PU %d, DO %d): "
                "each was answered with the model's default, its intercept",
                self.unknown_rides,
                pu,
                do,
            )

    # -- one ride --------------------------------------------------------------------------
    def predict_ride(self, ride: Ride) -> float:
        """Return the predicted duration in minutes of one validated ride."""
        if self._any_unknown and self._unknown[ride.pu * TABLE_SIZE + ride.do]:
            self._note_unknown(1, ride.pu, ride.do)
        if self._table is not None:
            # Same order of operations as the sparse dot product: zone terms, distance, intercept.
            return float(
                (self._table[ride.pu, ride.do] + self._w_distance * ride.distance) + self._intercept
            )
        return float(self._score([ride.pu], [ride.do], [ride.distance])[0])

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
        if self._any_unknown:
            unknown = self._unknown[pu * TABLE_SIZE + do]
            count = int(np.count_nonzero(unknown))
            if count:
                first = int(np.argmax(unknown))
                self._note_unknown(count, int(pu[first]), int(do[first]))
        return self._score(pu, do, distance)

    def _score(
        self,
        pu: Iterable[int] | np.ndarray,
        do: Iterable[int] | np.ndarray,
        distance: Iterable[float] | np.ndarray,
    ) -> np.ndarray:
        pu = np.asarray(pu, dtype="int64")
        do = np.asarray(do, dtype="int64")
        distance = np.asarray(distance, dtype="float64")
        if self._table is not None:
            return self._table_arrays(pu, do, distance)
        score = self._sparse_arrays if self.scoring_path == "sparse" else self._dict_arrays
        return self._chunked(score)(pu, do, distance)

    def _chunked(self, score: _Score) -> _Score:
        """Return ``score`` applied in chunks of ``_chunk_rows`` rides."""
        # A dense vectorizer (or the dict path) must never build a rows x vocabulary matrix
        # for a whole month at once.
        chunk = self._chunk_rows

        def chunked(pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
            parts = [
                score(pu[i : i + chunk], do[i : i + chunk], distance[i : i + chunk])
                for i in range(0, len(pu), chunk)
            ]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        return chunked
