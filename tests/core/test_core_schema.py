"""The one schema: both validators agree on edge rides, and the schema states the same rules."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.schema import (
    MAX_DISTANCE,
    MAX_ZONE,
    MIN_DISTANCE,
    MIN_ZONE,
    Ride,
    RideEvent,
    field_bounds,
)
from deploy_modes.core.validation import invalid_reasons, validate_ride

HUGE = 10**400  # no float64 holds it
EDGE_ZONES: list[Any] = [0, 1, 265, 266, -1, 74.0, 74.5, -0.0, math.nan, math.inf, -math.inf]
EDGE_ZONES += [10**20, HUGE, "74", " 74 ", "0074", "0", "266", "9" * 40, "7a", "-5", "", True]
EDGE_ZONES += [None]
EDGE_DISTANCES: list[Any] = [0, 0.0, -0.0, 500, 500.0, 500.0001, math.nextafter(500.0, 600)]
EDGE_DISTANCES += [-1e-300, 5e-324, math.nan, math.inf, -math.inf, 10**20, HUGE, -HUGE]
EDGE_DISTANCES += ["2.5", "0", True, None]

zones = st.sampled_from(EDGE_ZONES) | st.integers(-3, 270) | st.floats()
distances = st.sampled_from(EDGE_DISTANCES) | st.integers(-3, 600) | st.floats()


def _one_ride_valid(pu: Any, do: Any, distance: Any) -> bool:
    try:
        validate_ride({"PULocationID": pu, "DOLocationID": do, "trip_distance": distance})
    except RideValidationError:
        return False
    return True


def _column_value(value: Any) -> float | None:
    """Return what a numeric column holds for ``value`` (NaN for null), or None if it cannot.

    A digit string is the number it spells (a text source cast to numbers); other strings,
    booleans and numbers beyond float64 are refused by the batch readers as wrong_type.
    """
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        digits = value.strip()
        return float(digits) if digits.isdigit() and digits.isascii() else None
    try:
        return float(value)
    except OverflowError:
        return None


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(zones, zones, distances), min_size=1, max_size=20))
@example([(z, 74, 2.5) for z in EDGE_ZONES])
@example([(74, z, 2.5) for z in EDGE_ZONES])
@example([(74, 75, d) for d in EDGE_DISTANCES])
def test_one_ride_and_vectorised_validators_agree(rides: list[tuple[Any, Any, Any]]) -> None:
    columns = [[_column_value(value) for value in ride] for ride in rides]
    numeric = [
        i
        for i, row in enumerate(columns)
        if None not in row and not isinstance(rides[i][2], str)  # a distance is never text
    ]
    pu, do, distance = (np.array([columns[i][k] for i in numeric], "float64") for k in range(3))
    refused = np.zeros(len(numeric), dtype=bool)
    for mask in invalid_reasons(pu, do, distance).values():
        refused |= mask
    for row, i in enumerate(numeric):
        assert _one_ride_valid(*rides[i]) == (not refused[row]), rides[i]
    for i in set(range(len(rides))) - set(numeric):  # never a number: both must refuse
        assert not _one_ride_valid(*rides[i]), rides[i]


def test_the_vectorised_bounds_are_the_models() -> None:
    assert field_bounds(Ride, "pu") == field_bounds(Ride, "do") == (MIN_ZONE, MAX_ZONE)
    assert field_bounds(Ride, "distance") == (MIN_DISTANCE, MAX_DISTANCE)


def test_the_json_schema_states_the_rules() -> None:
    schema = Ride.model_json_schema()
    assert schema["required"] == ["PULocationID", "DOLocationID", "trip_distance"]
    zone = schema["properties"]["PULocationID"]
    assert (zone["type"], zone["minimum"], zone["maximum"]) == ("integer", MIN_ZONE, MAX_ZONE)
    distance = schema["properties"]["trip_distance"]
    assert (distance["minimum"], distance["maximum"]) == (MIN_DISTANCE, MAX_DISTANCE)


def test_a_ride_is_read_by_the_course_names_only() -> None:
    renamed = {"pu": 74, "do": 75, "distance": 2.5}
    try:
        validate_ride(renamed)
    except RideValidationError as exc:
        assert exc.to_dict() == {"error": "PULocationID is required", "field": "PULocationID"}
    else:
        raise AssertionError("a ride with attribute names instead of the course's validated")


def test_a_stream_event_is_the_course_event() -> None:
    event = RideEvent.model_validate(
        {"ride": {"PULocationID": "130", "DOLocationID": 205, "trip_distance": 3}, "ride_id": 256}
    )
    assert event.ride == Ride(PULocationID=130, DOLocationID=205, trip_distance=3.0)
    assert event.ride_id == 256
