"""Validation at every boundary, pickup and drop-off alike: the batch masks and the web check agree.

The hypothesis parity test draws drop-off zones as integers and distances from all floats, so it
almost never tries a fractional drop-off zone or a distance of exactly 500 miles: the mutation run
showed a batch check that accepted ``DOLocationID`` 74.5 or dropped a 500-mile ride passing it.
This grid tries every edge value on every field, in both validators.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.validation import invalid_reasons, validate_ride

NAN, INF = math.nan, math.inf
ZONES = [0, 0.5, 1, 1.5, 74, 264.5, 265, 265.5, 266, -1, NAN, INF, -INF]
DISTANCES = [-1, -1e-9, 0, 1e-9, 2.5, 499.9999, 500, 500.0001, 501, NAN, INF, -INF]
GRID = list(itertools.product(ZONES, ZONES, DISTANCES))


def _web_verdict(pu: float, do: float, distance: float) -> str | None:
    """Return the field the single-ride check rejects, or None when it accepts the ride."""
    payload = {
        "PULocationID": None if math.isnan(pu) else pu,
        "DOLocationID": None if math.isnan(do) else do,
        "trip_distance": None if math.isnan(distance) else distance,
    }
    try:
        validate_ride(payload)
    except RideValidationError as exc:
        return exc.field
    return None


def test_every_edge_ride_gets_the_same_verdict_in_batch_and_web() -> None:
    pu, do, distance = (np.array([row[i] for row in GRID], dtype="float64") for i in range(3))
    reasons = invalid_reasons(pu, do, distance)
    dropped = np.zeros(len(GRID), dtype=bool)
    for mask in reasons.values():
        assert not (dropped & mask).any(), "a row counted under two reasons"
        dropped |= mask
    disagreements = [
        row
        for row, bad in zip(GRID, dropped, strict=True)
        if bad != (_web_verdict(*row) is not None)
    ]
    assert disagreements == []


@pytest.mark.parametrize(
    ("pu", "do", "distance", "reason"),
    [
        (74, 75, 0, None),
        (1, 265, 500, None),
        (265, 1, 500.0, None),
        (0, 75, 1, "zone_out_of_range"),
        (74, 0, 1, "zone_out_of_range"),
        (266, 75, 1, "zone_out_of_range"),
        (74, 266, 1, "zone_out_of_range"),
        (74.5, 75, 1, "zone_out_of_range"),
        (74, 75.5, 1, "zone_out_of_range"),
        (NAN, 75, 1, "missing_zone"),
        (74, NAN, 1, "missing_zone"),
        (74, 75, NAN, "missing_distance"),
        (74, 75, 500.0001, "distance_out_of_range"),
        (74, 75, -1e-9, "distance_out_of_range"),
        (74, 75, INF, "distance_out_of_range"),
        (74, 75, -INF, "distance_out_of_range"),
    ],
)
def test_each_edge_ride_is_dropped_for_its_reason(
    pu: float, do: float, distance: float, reason: str | None
) -> None:
    # A valid ride among others, so a mask that ignores its row's own values shows up too.
    reasons = invalid_reasons(
        np.array([74, pu, 74]), np.array([75, do, 75]), np.array([2.5, distance, 2.5])
    )
    named = {name: np.flatnonzero(mask).tolist() for name, mask in reasons.items()}
    expected = {name: [] for name in named}
    if reason is not None:
        expected[reason] = [1]
    assert named == expected
