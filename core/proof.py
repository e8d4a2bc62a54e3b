"""Prove a scoring shortcut equal to the model's own ``predict`` before using it.

The service may score with a coefficient table (identity-link linear models only) or by
building the vectorizer's sparse matrix directly; each is checked at load on a probe set of
rides (every vocabulary token, seeded random rides, edge values) against
``pipeline.predict`` on the feature dicts, and used only if every ride agrees within
:data:`TOLERANCE`. Otherwise the service scores with the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn.linear_model as linear_model
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVR

from deploy_modes.core.schemes import FeatureScheme
from deploy_modes.core.validation import MAX_DISTANCE, MAX_ZONE, MIN_ZONE

__all__ = [
    "IDENTITY_LINK_LINEAR",
    "TOLERANCE",
    "Probe",
    "Proof",
    "is_identity_linear",
    "probe_rides",
    "prove",
]

TOLERANCE = 1e-9
RANDOM_RIDES = 1_000
EDGE_DISTANCES = (0.0, 1e-3, 0.5, 1.0, 42.0, MAX_DISTANCE)
# predict is X @ coef_ + intercept_ for exactly these classes. GLMs (Poisson, Gamma, Tweedie)
# apply a link function and must never be here; subclasses are not trusted either (exact type).
_IDENTITY_LINK_NAMES = (
    "ARDRegression",
    "BayesianRidge",
    "ElasticNet",
    "ElasticNetCV",
    "HuberRegressor",
    "Lars",
    "LarsCV",
    "Lasso",
    "LassoCV",
    "LassoLars",
    "LassoLarsCV",
    "LassoLarsIC",
    "LinearRegression",
    "OrthogonalMatchingPursuit",
    "OrthogonalMatchingPursuitCV",
    "QuantileRegressor",
    "Ridge",
    "RidgeCV",
    "SGDRegressor",
    "TheilSenRegressor",
)
IDENTITY_LINK_LINEAR: frozenset[type] = frozenset(
    {LinearSVR, *(getattr(linear_model, name) for name in _IDENTITY_LINK_NAMES)}
)


@dataclass(frozen=True)
class Probe:
    """Rides that exercise a model: zones, distances and the model's own predictions."""

    pu: np.ndarray
    do: np.ndarray
    distance: np.ndarray
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.pu)


@dataclass(frozen=True)
class Proof:
    """The outcome of checking one shortcut: its largest difference from the truth."""

    path: str
    max_diff: float
    rides: int

    @property
    def holds(self) -> bool:
        """Return whether every probe ride agreed within the tolerance."""
        return bool(self.max_diff <= TOLERANCE)


def is_identity_linear(estimator: Any) -> bool:
    """Return whether ``estimator.predict`` is ``X @ coef_ + intercept_`` (an explicit list)."""
    coef = getattr(estimator, "coef_", None)
    return (
        type(estimator) in IDENTITY_LINK_LINEAR
        and coef is not None
        and np.asarray(coef).ndim == 1
        and np.size(getattr(estimator, "intercept_", None)) == 1
    )


def probe_rides(
    scheme: FeatureScheme, pipeline: Pipeline, seed: int = 0, chunk_rows: int = 100_000
) -> Probe:
    """Return the probe set: every token once, seeded random rides and edge values."""
    rng = np.random.default_rng(seed)
    token_pu, token_do = scheme.token_rides()
    edge_zones = np.array([MIN_ZONE, MIN_ZONE + 1, MAX_ZONE - 1, MAX_ZONE])
    edge_pu, edge_do = (a.ravel() for a in np.meshgrid(edge_zones, edge_zones))
    edges = len(EDGE_DISTANCES)
    pu = np.concatenate(
        [
            token_pu,
            rng.integers(MIN_ZONE, MAX_ZONE + 1, RANDOM_RIDES),
            np.repeat(edge_pu, edges),
        ]
    ).astype("int64")
    do = np.concatenate(
        [
            token_do,
            rng.integers(MIN_ZONE, MAX_ZONE + 1, RANDOM_RIDES),
            np.repeat(edge_do, edges),
        ]
    ).astype("int64")
    distance = np.concatenate(
        [
            np.round(rng.exponential(3.0, len(token_pu) + RANDOM_RIDES), 2),
            np.tile(np.array(EDGE_DISTANCES), len(edge_pu)),
        ]
    )
    dicts = [
        scheme.ride_features(p, d, x)
        for p, d, x in zip(pu.tolist(), do.tolist(), distance.tolist(), strict=True)
    ]
    # In chunks: a dense vectorizer would otherwise build a rides x vocabulary matrix at once.
    truth = np.concatenate(
        [
            np.asarray(pipeline.predict(dicts[i : i + chunk_rows]), dtype="float64")
            for i in range(0, len(dicts), chunk_rows)
        ]
    )
    return Probe(pu, do, distance, truth)


def prove(
    path: str, score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], probe: Probe
) -> Proof:
    """Score the probe rides with ``score`` and return the largest difference from the truth."""
    try:
        got = np.asarray(score(probe.pu, probe.do, probe.distance), dtype="float64")
    except (ValueError, TypeError, ArithmeticError):
        # A shortcut that cannot even run on these rides is not proven; the model's own path is.
        return Proof(path, float("inf"), len(probe))
    if got.shape != probe.truth.shape:
        return Proof(path, float("inf"), len(probe))
    diff = np.abs(got - probe.truth)
    # NaN anywhere (in either) is a disagreement, never a pass.
    worst = float("inf") if np.isnan(diff).any() else float(diff.max(initial=0.0))
    return Proof(path, worst, len(probe))
