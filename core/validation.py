"""Ride validation: one ride (a JSON-like mapping) or many rows at once (numpy arrays)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy_modes.core.errors import RideValidationError

__all__ = [
    "MAX_DISTANCE",
    "MAX_ZONE",
    "MIN_ZONE",
    "REQUIRED_FIELDS",
    "Ride",
    "invalid_reasons",
    "validate_ride",
]

MIN_ZONE = 1
MAX_ZONE = 265
MAX_DISTANCE = 500.0
REQUIRED_FIELDS = ("PULocationID", "DOLocationID", "trip_distance")
_MAX_ID_DIGITS = 6  # longer digit strings are out of range anyway; refuse before int()


@dataclass(frozen=True, slots=True)
class Ride:
    """A validated ride: pickup zone, dropoff zone, distance in miles."""

    pu: int
    do: int
    distance: float


def _zone(payload: Mapping[str, Any], field: str) -> int:
    if field not in payload or payload[field] is None:
        raise RideValidationError(f"{field} is required", field)
    value = payload[field]
    if isinstance(value, bool | np.bool_):
        raise RideValidationError(f"{field} must be an integer zone ID, got a boolean", field)
    if type(value) is int:  # the common JSON case, checked first because it is fastest
        zone = value
    elif isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and float(value).is_integer()
    ):  # numpy integers, and integral floats: 74.0 is zone 74
        zone = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and value.isascii():
        digits = value.strip()
        if len(digits) > _MAX_ID_DIGITS:
            raise RideValidationError(f"{field} must be between {MIN_ZONE} and {MAX_ZONE}", field)
        zone = int(digits)
    else:
        raise RideValidationError(
            f"{field} must be an integer zone ID, got {type(value).__name__}", field
        )
    if not MIN_ZONE <= zone <= MAX_ZONE:
        raise RideValidationError(f"{field} must be between {MIN_ZONE} and {MAX_ZONE}", field)
    return zone


def _distance(payload: Mapping[str, Any]) -> float:
    field = "trip_distance"
    if field not in payload or payload[field] is None:
        raise RideValidationError(f"{field} is required", field)
    value = payload[field]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise RideValidationError(
            f"{field} must be a number of miles, got {type(value).__name__}", field
        )
    try:
        distance = float(value)
    except OverflowError:  # an int too large for a float
        raise RideValidationError(f"{field} must be at most {MAX_DISTANCE:g}", field) from None
    if not math.isfinite(distance):
        raise RideValidationError(f"{field} must be a finite number", field)
    if distance < 0:
        raise RideValidationError(f"{field} must not be negative", field)
    if distance > MAX_DISTANCE:
        raise RideValidationError(f"{field} must be at most {MAX_DISTANCE:g}", field)
    return distance


def validate_ride(payload: object) -> Ride:
    """Return the validated ride or raise :class:`RideValidationError` naming the field."""
    if not isinstance(payload, Mapping):
        raise RideValidationError(f"a ride must be a JSON object, got {_json_type(payload)}", None)
    return Ride(_zone(payload, "PULocationID"), _zone(payload, "DOLocationID"), _distance(payload))


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, numbers.Real) else type(value).__name__


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
            (pu < MIN_ZONE)
            | (pu > MAX_ZONE)
            | (do < MIN_ZONE)
            | (do > MAX_ZONE)
            | (pu != np.floor(pu))
            | (do != np.floor(do)),
        ),
        ("missing_distance", np.isnan(distance)),
        (
            "distance_out_of_range",
            ~np.isfinite(distance) | (distance < 0) | (distance > MAX_DISTANCE),
        ),
    ]
    taken = np.zeros(pu.shape, dtype=bool)
    reasons: dict[str, np.ndarray] = {}
    for name, mask in checks:
        mask = mask & ~taken
        reasons[name] = mask
        taken |= mask
    return reasons
