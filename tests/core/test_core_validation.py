"""Ride validation: every field rule, one ride at a time and as arrays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.validation import Ride, invalid_reasons, validate_ride

GOOD = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}
_DROP = object()  # marks a field to leave out of the payload


def ride(**changes: Any) -> dict[str, Any]:
    """Return a valid ride with some fields changed (``_DROP`` leaves the field out)."""
    payload = {**GOOD, **changes}
    return {k: v for k, v in payload.items() if v is not _DROP}


def test_a_valid_ride() -> None:
    assert validate_ride(GOOD) == Ride(PULocationID=74, DOLocationID=75, trip_distance=2.5)


@pytest.mark.parametrize(
    ("value", "zone"),
    [(1, 1), (265, 265), ("74", 74), (" 74 ", 74), ("0074", 74), (74.0, 74), (np.int64(74), 74)],
)
def test_zone_forms_accepted(value: Any, zone: int) -> None:
    assert validate_ride(ride(PULocationID=value)).pu == zone
    assert validate_ride(ride(DOLocationID=value)).do == zone


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "between 1 and 265"),
        (266, "between 1 and 265"),
        (-1, "between 1 and 265"),
        (10**100, "between 1 and 265"),
        ("9" * 5000, "between 1 and 265"),
        ("0", "between 1 and 265"),
        (True, "got a boolean"),
        (False, "got a boolean"),
        (np.bool_(True), "got a boolean"),
        (74.5, "integer zone ID, got float"),
        (math.nan, "integer zone ID, got float"),
        (math.inf, "integer zone ID, got float"),
        ("", "integer zone ID, got str"),
        ("-5", "integer zone ID, got str"),
        ("7a", "integer zone ID, got str"),
        ("1e2", "integer zone ID, got str"),
        ("٣", "integer zone ID, got str"),  # an Arabic-Indic digit: isdigit() but not ASCII
        ([74], "integer zone ID, got list"),
        ({"id": 74}, "integer zone ID, got dict"),
    ],
)
@pytest.mark.parametrize("field", ["PULocationID", "DOLocationID"])
def test_zone_rules(field: str, value: Any, message: str) -> None:
    with pytest.raises(RideValidationError, match=message) as info:
        validate_ride(ride(**{field: value}))
    assert info.value.field == field
    assert field in info.value.message
    assert info.value.to_dict() == {"error": info.value.message, "field": field}


@pytest.mark.parametrize("field", ["PULocationID", "DOLocationID", "trip_distance"])
@pytest.mark.parametrize("absent", [_DROP, None])
def test_missing_or_null_fields(field: str, absent: object) -> None:
    with pytest.raises(RideValidationError, match=f"{field} is required") as info:
        validate_ride(ride(**{field: absent}))
    assert info.value.field == field


@pytest.mark.parametrize("value", [0, 0.0, 500, 500.0, 3, np.float64(2.25), np.float32(1.5)])
def test_distance_forms_accepted(value: Any) -> None:
    assert validate_ride(ride(trip_distance=value)).distance == float(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.01, "must not be negative"),
        (-(10**6), "must not be negative"),
        (500.01, "at most 500"),
        (10**400, "at most 500"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (-math.inf, "finite"),
        (True, "number of miles, got bool"),
        ("2.5", "number of miles, got str"),
        ([2.5], "number of miles, got list"),
        ({}, "number of miles, got dict"),
    ],
)
def test_distance_rules(value: Any, message: str) -> None:
    with pytest.raises(RideValidationError, match=message) as info:
        validate_ride(ride(trip_distance=value))
    assert info.value.field == "trip_distance"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ([GOOD], "an array"),
        ("ride", "a string"),
        (None, "null"),
        (3, "a number"),
        (True, "a boolean"),
    ],
)
def test_a_ride_must_be_an_object(payload: object, kind: str) -> None:
    with pytest.raises(RideValidationError, match=f"must be a JSON object, got {kind}") as info:
        validate_ride(payload)
    assert info.value.field is None


def test_extra_fields_are_ignored() -> None:
    assert validate_ride({**GOOD, "ride_id": "abc", "VendorID": 2}) == Ride(
        PULocationID=74, DOLocationID=75, trip_distance=2.5
    )


@given(
    st.dictionaries(
        st.sampled_from(["PULocationID", "DOLocationID", "trip_distance", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=8)
        | st.lists(st.integers(), max_size=2),
    )
)
def test_any_payload_is_a_ride_or_a_validation_error(payload: dict[str, Any]) -> None:
    try:
        valid = validate_ride(payload)
    except RideValidationError as exc:
        assert exc.field in {"PULocationID", "DOLocationID", "trip_distance"}
        return
    assert 1 <= valid.pu <= 265 and 1 <= valid.do <= 265
    assert 0 <= valid.distance <= 500


@given(st.integers(1, 265), st.integers(1, 265), st.floats(0, 500))
def test_every_valid_ride_passes(pu: int, do: int, distance: float) -> None:
    assert validate_ride(
        {"PULocationID": str(pu), "DOLocationID": do, "trip_distance": distance}
    ) == Ride(PULocationID=pu, DOLocationID=do, trip_distance=distance)


# -- arrays -----------------------------------------------------------------------------------
def test_invalid_reasons_are_disjoint_and_named() -> None:
    nan = np.nan
    pu = np.array([74, nan, 0, 74, 74, 74, 74.5, 74, 266])
    do = np.array([75, 75, 75, 75, 75, 75, 75, nan, 75])
    dist = np.array([2.5, 1, 1, nan, -1, 501, 1, nan, np.inf])
    reasons = invalid_reasons(pu, do, dist)
    expected = {
        "missing_zone": [1, 7],
        "zone_out_of_range": [2, 6, 8],
        "missing_distance": [3],
        "distance_out_of_range": [4, 5],
    }
    assert {name: np.flatnonzero(mask).tolist() for name, mask in reasons.items()} == expected
    assert sum(mask.astype(int) for mask in reasons.values()).max() == 1


@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(-5, 300), st.just(np.nan), st.floats(-1e3, 1e3)),
            st.one_of(st.integers(-5, 300), st.just(np.nan)),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=30,
    )
)
def test_invalid_reasons_agree_with_validate_ride(rows: list[tuple[float, float, float]]) -> None:
    pu, do, dist = (np.array([r[i] for r in rows], dtype="float64") for i in range(3))
    reasons = invalid_reasons(pu, do, dist)
    bad = np.zeros(len(rows), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    for index, (p, d, x) in enumerate(rows):
        payload = {
            "PULocationID": None if math.isnan(p) else float(p),
            "DOLocationID": None if math.isnan(d) else float(d),
            "trip_distance": None if math.isnan(x) else float(x),
        }
        try:
            validate_ride(payload)
            valid = True
        except RideValidationError:
            valid = False
        assert valid == (not bad[index]), payload
