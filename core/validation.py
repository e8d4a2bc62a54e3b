"""Ride validation: one ride (a JSON-like mapping) or many rows at once (numpy arrays).

Both derive from :class:`deploy_modes.core.schema.Ride`: one ride through the model itself,
arrays through checks built from the model's field bounds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import ValidationError

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.schema import (
    MAX_DISTANCE,
    MAX_ZONE,
    MIN_ZONE,
    Ride,
    field_bounds,
    json_type,
    ride_error,
)

__all__ = [
    "MAX_DISTANCE",
    "MAX_ZONE",
    "MIN_ZONE",
    "Ride",
    "invalid_reasons",
    "validate_ride",
]

# The vectorised checks read their bounds from the model, so the two validators cannot drift.
_PU_LOW, _PU_HIGH = field_bounds(Ride, "pu")
_DO_LOW, _DO_HIGH = field_bounds(Ride, "do")
_DISTANCE_LOW, _DISTANCE_HIGH = field_bounds(Ride, "distance")


def validate_ride(payload: object) -> Ride:
    """Return the validated ride or raise :class:`RideValidationError` naming the field."""
    if not isinstance(payload, Mapping):  # pydantic would also read attributes of objects
        raise RideValidationError(f"a ride must be a JSON object, got {json_type(payload)}", None)
    try:
        return Ride.model_validate(payload)
    except ValidationError as exc:
        raise ride_error(exc) from None


def invalid_reasons(pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> dict[str, np.ndarray]:
    """Return a boolean mask per drop reason for arrays of rides (float arrays; NaN = null).

    A row is counted under the first reason that applies, so the masks are disjoint and
    their sums add up to the rows dropped.
    """
    pu = np.asarray(pu, dtype="float64")
    do = np.asarray(do, dtype="float64")
    distance = np.asarray(distance, dtype="float64")
    checks = [
        ("missing_zone", np.isnan(pu) | np.isnan(do)),
        (
            "zone_out_of_range",
            (pu < _PU_LOW)
            | (pu > _PU_HIGH)
            | (do < _DO_LOW)
            | (do > _DO_HIGH)
            | (pu != np.floor(pu))
            | (do != np.floor(do)),
        ),
        ("missing_distance", np.isnan(distance)),
        (
            "distance_out_of_range",
            ~np.isfinite(distance) | (distance < _DISTANCE_LOW) | (distance > _DISTANCE_HIGH),
        ),
    ]
    taken = np.zeros(pu.shape, dtype=bool)
    reasons: dict[str, np.ndarray] = {}
    for name, mask in checks:
        mask = mask & ~taken
        reasons[name] = mask
        taken |= mask
    return reasons
