"""Scoring: every path of the model service equals ``pipeline.predict`` on the same rides."""

from __future__ import annotations

import dataclasses
import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.scoring import ModelService, Prediction
from deploy_modes.core.validation import Ride

TOLERANCE = 1e-9
SERVICES = ["model_service", "forest_service", "scaled_service", "course_service", "dense_service"]
Predict = Callable[[Pipeline, Any, Any, Any], np.ndarray]


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> ModelService:
    """Return each kind of model: linear table, forest, dict path, course tuple, dense input."""
    return request.getfixturevalue(request.param)


def _rides(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 266, n), rng.integers(1, 266, n), np.round(rng.exponential(3, n), 2)


def test_each_model_takes_its_path(
    model_service: ModelService,
    forest_service: ModelService,
    scaled_service: ModelService,
    course_service: ModelService,
    dense_service: ModelService,
) -> None:
    assert model_service.fast_path == "linear-table"
    assert course_service.fast_path == "linear-table"
    assert forest_service.fast_path == "sparse"
    # A 3-step pipeline keeps its scaler: the sparse matrix feeds the steps after the vectorizer.
    assert scaled_service.fast_path == "sparse"
    # A dense vectorizer's regressor gets the sparse build densified, not the dict path.
    assert dense_service.fast_path == "sparse"


def test_dense_models_score_in_chunks(
    dense_service: ModelService, sklearn_predict: Predict
) -> None:
    # The vectorizer is dense, so a whole month at once would be a rows x vocabulary matrix.
    for rides in (3 * dense_service._chunk_rows + 7, dense_service._chunk_rows + 1):  # 4, 2 parts
        pu, do, dist = _rides(rides, 5)
        expected = sklearn_predict(dense_service.pipeline, pu, do, dist)
        got = dense_service.predict_arrays(pu, do, dist)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_dense_models_never_hold_more_than_a_chunk_of_the_matrix(
    dense_service: ModelService,
) -> None:
    # Eight chunks' worth of rides: scored at once, the dense rows x vocabulary float64 matrix
    # alone would take 8 x 64 MB; in chunks the peak stays near one chunk's 64 MB.
    rides = 8 * (8_000_000 // dense_service.scheme.width)
    pu, do, dist = _rides(rides, 6)
    tracemalloc.start()
    try:
        dense_service.predict_arrays(pu, do, dist)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    whole = rides * dense_service.scheme.width * 8
    assert peak < whole / 3, (peak, whole)


def test_rides_include_unseen_zone_pairs(model_service: ModelService) -> None:
    pu, do, _ = _rides(2_000, 1)
    vocab = model_service.vectorizer.vocabulary_
    unseen = sum(f"PU_DO={p}_{d}" not in vocab for p, d in zip(pu, do, strict=True))
    assert 0 < unseen < len(pu)  # the comparison below covers both kinds


def test_arrays_equal_pipeline_predict(service: ModelService, sklearn_predict: Predict) -> None:
    pu, do, dist = _rides(2_000, 1)
    expected = sklearn_predict(service.pipeline, pu, do, dist)
    np.testing.assert_allclose(
        service.predict_arrays(pu, do, dist), expected, rtol=0, atol=TOLERANCE
    )


def test_one_ride_equals_pipeline_predict(service: ModelService, sklearn_predict: Predict) -> None:
    pu, do, dist = _rides(50, 2)
    expected = sklearn_predict(service.pipeline, pu, do, dist)
    for i in range(len(pu)):
        payload = {"PULocationID": int(pu[i]), "DOLocationID": int(do[i]), "trip_distance": dist[i]}
        assert service.predict_one(payload) == pytest.approx(expected[i], abs=TOLERANCE)
        ride = Ride(PULocationID=int(pu[i]), DOLocationID=int(do[i]), trip_distance=float(dist[i]))
        assert service.predict_ride(ride) == pytest.approx(expected[i], abs=TOLERANCE)


def test_many_rides_equal_pipeline_predict(service: ModelService, sklearn_predict: Predict) -> None:
    pu, do, dist = _rides(300, 3)
    payloads = [
        {"PULocationID": str(p), "DOLocationID": int(d), "trip_distance": float(x), "ride_id": i}
        for i, (p, d, x) in enumerate(zip(pu, do, dist, strict=True))
    ]
    results = service.predict_many(payloads)
    expected = sklearn_predict(service.pipeline, pu, do, dist)
    assert [r.index for r in results] == list(range(len(pu)))
    assert [r.ride_id for r in results] == list(range(len(pu)))
    assert all(r.error is None for r in results)
    got = np.array([r.duration for r in results])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@settings(max_examples=60, deadline=None)  # no deadline: the CPU is shared
@given(
    st.lists(
        st.tuples(st.integers(1, 265), st.integers(1, 265), st.floats(0, 500)),
        min_size=1,
        max_size=40,
    )
)
def test_any_valid_rides_match_pipeline_predict(
    model_service: ModelService,
    forest_service: ModelService,
    sklearn_predict: Predict,
    rows: list[tuple[int, int, float]],
) -> None:
    pu, do, dist = (np.array([r[i] for r in rows]) for i in range(3))
    for service in (model_service, forest_service):
        expected = sklearn_predict(service.pipeline, pu, do, dist)
        np.testing.assert_allclose(
            service.predict_arrays(pu, do, dist), expected, rtol=0, atol=TOLERANCE
        )
        assert service.predict_one(
            {"PULocationID": rows[0][0], "DOLocationID": rows[0][1], "trip_distance": rows[0][2]}
        ) == pytest.approx(expected[0], abs=TOLERANCE)


def test_predict_many_reports_invalid_rides_and_scores_the_rest(
    model_service: ModelService,
) -> None:
    payloads: list[object] = [
        {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "ride_id": "a"},
        {"PULocationID": 0, "DOLocationID": 75, "trip_distance": 2.5, "ride_id": "b"},
        "not a ride",
        {"PULocationID": 74, "DOLocationID": 75, "trip_distance": float("nan")},
        {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "ride_id": "e"},
    ]
    results = model_service.predict_many(payloads)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.ride_id for r in results] == ["a", "b", None, None, "e"]
    assert [r.error.field if r.error else None for r in results] == [
        None,
        "PULocationID",
        None,
        "trip_distance",
        None,
    ]
    assert results[0].duration == results[4].duration == model_service.predict_one(payloads[0])
    assert all(r.duration is None for r in results[1:4])


def test_predict_many_of_nothing(model_service: ModelService) -> None:
    assert model_service.predict_many([]) == []
    [only] = model_service.predict_many([{}])
    assert isinstance(only, Prediction)
    assert (only.index, only.duration, only.ride_id) == (0, None, None)
    assert only.error is not None and only.error.field == "PULocationID"
    with pytest.raises(dataclasses.FrozenInstanceError):  # a result cannot change once given
        only.duration = 1.0  # type: ignore[misc]


def test_predict_one_raises_a_validation_error(model_service: ModelService) -> None:
    with pytest.raises(RideValidationError) as info:
        model_service.predict_one({"PULocationID": 74, "DOLocationID": 75})
    assert info.value.field == "trip_distance"


def test_predict_arrays_of_nothing(service: ModelService) -> None:
    out = service.predict_arrays(np.array([], "int64"), np.array([], "int64"), np.array([]))
    assert out.shape == (0,) and out.dtype == np.float64


@pytest.mark.parametrize(
    ("pu", "do"),
    [([0, 5], [5, 5]), ([5, 5], [5, 266]), ([-1], [5]), ([300], [1])],
)
def test_predict_arrays_refuses_out_of_range_zones(
    model_service: ModelService, pu: list[int], do: list[int]
) -> None:
    with pytest.raises(ValueError, match=r"zone IDs must be 1\.\.265"):
        model_service.predict_arrays(pu, do, [1.0] * len(pu))


@pytest.mark.parametrize(
    ("pu", "do", "distance"),
    [
        ([1, 2], [1], [1.0, 2.0]),
        ([1, 2, 3], [1, 2], [1.0, 2.0]),  # the zones' lengths differ, do and distance agree
        ([1], [1, 2], [1.0, 2.0]),  # one pickup would broadcast over two drop-offs
        ([1], [1], [1.0, 2.0]),  # one ride would broadcast over two distances
        ([1, 2], [1, 2], [1.0]),
        (5, 6, 1.0),  # scalars, not arrays
        ([[1, 2]], [[3, 4]], [[1.0, 2.0]]),  # equal shapes, but 2-d: no silent 2-d answer
    ],
)
def test_predict_arrays_refuses_anything_but_three_1d_arrays_of_one_length(
    model_service: ModelService, pu: Any, do: Any, distance: Any
) -> None:
    with pytest.raises(ValueError, match="1-d arrays of the same length"):
        model_service.predict_arrays(pu, do, distance)


def test_predict_arrays_accepts_float_zone_columns(
    model_service: ModelService, sklearn_predict: Predict
) -> None:
    # A real TLC column with nulls is float64; after validation its values are whole numbers.
    pu, do, dist = _rides(100, 4)
    got = model_service.predict_arrays(pu.astype("float64"), do.astype("float64"), dist)
    expected = sklearn_predict(model_service.pipeline, pu, do, dist)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_service_exposes_the_model_identity(model_service: ModelService) -> None:
    assert model_service.name == "ride_duration_prediction_model"
    assert model_service.version == model_service.model.manifest["version"]
    assert len(model_service.version) == 12
    assert model_service.target == "duration"  # what web and batch label their answers with


def test_the_reason_names_why_no_table_was_taken(
    forest_service: ModelService, scaled_service: ModelService
) -> None:
    # `deploy model info` prints this reason: it must name the real cause, not a neighbour's.
    assert "no table: RandomForestRegressor is not an identity-link linear model" in (
        forest_service.scoring_reason
    )
    assert "no table: the pipeline has 3 steps" in scaled_service.scoring_reason
    # The service's estimator is the pipeline's last step, also behind a scaler.
    assert scaled_service.estimator is scaled_service.pipeline.steps[-1][1]
    assert type(scaled_service.estimator).__name__ == "LinearRegression"


KNOWN_PAIRS = [(74, 75), (130, 205), (43, 236), (74, 236)]


def _zones_only_service() -> ModelService:
    """Return a real homework-style model on zone strings only: an unseen ride has no feature."""
    dicts = [{"PULocationID": str(p), "DOLocationID": str(d)} for p, d in KNOWN_PAIRS * 5]
    durations = [float(5 + i % 7 + p % 3) for i, (p, _) in enumerate(KNOWN_PAIRS * 5)]
    pipeline = make_pipeline(DictVectorizer(), LinearRegression()).fit(dicts, durations)
    return ModelService(LoadedModel(pipeline, {"version": "test"}, "zones-only"))


def test_unknown_rides_are_counted_told_to_listeners_and_logged_at_each_doubling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = _zones_only_service()
    heard: list[int] = []
    service.unknown_listeners.append(heard.append)  # the web service's metric counter does this
    unseen = {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 2.0}
    with caplog.at_level(logging.WARNING, logger="deploy_modes.core.scoring"):
        service.predict_one(unseen)
        service.predict_arrays([1, 74, 3, 4], [2, 75, 5, 6], [1.0, 1.0, 1.0, 1.0])
        for _ in range(5):
            service.predict_one(unseen)
        service.predict_one({"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.0})
    assert heard == [1, 3, 1, 1, 1, 1, 1]
    assert service.unknown_rides == 9
    # One line per doubling of the count (1, then 4 after the array of 3, then 8), not per ride.
    lines = [r.getMessage() for r in caplog.records if "no feature the model" in r.getMessage()]
    assert [line.split()[0] for line in lines] == ["1", "4", "8"], lines


# Pairs on the zone range's edges and in between; the durations depend strongly on the pair.
TABLE_PAIRS = [(1, 1), (1, 265), (265, 1), (265, 265), (2, 3), (74, 75), (130, 205), (43, 236)]


@pytest.mark.parametrize(
    ("scheme", "features"),
    [
        ("pu_do", lambda p, d, x: {"PU_DO": f"{p}_{d}", "trip_distance": x}),
        ("zone_tokens", lambda p, d, x: {"PULocationID": str(p), "DOLocationID": str(d)}),
        (
            "zone_tokens",
            lambda p, d, x: {"PULocationID": str(p), "DOLocationID": str(d), "trip_distance": x},
        ),
        ("zone_ids", lambda p, d, x: {"PULocationID": p, "DOLocationID": d, "trip_distance": x}),
    ],
)
def test_a_linear_model_of_each_scheme_takes_the_table_and_equals_predict_on_every_pair(
    scheme: str, features: Callable[[int, int, float], dict[str, Any]]
) -> None:
    rides = [(p, d, float(1 + (3 * i) % 7)) for i, (p, d) in enumerate(TABLE_PAIRS * 3)]
    durations = [float((7 * p + 13 * d) % 60) + 2.0 * x for p, d, x in rides]
    dicts = [features(p, d, x) for p, d, x in rides]
    pipeline = make_pipeline(DictVectorizer(), LinearRegression()).fit(dicts, durations)
    service = ModelService(LoadedModel(pipeline, {"version": "test"}, scheme))
    assert (service.scheme.name, service.fast_path) == (scheme, "linear-table")
    # Every pair the vocabulary knows (so every column, the first included) and every mix of
    # the edge zones, at distances other than the 0 the table is built at.
    zones = sorted({z for pair in TABLE_PAIRS for z in pair})
    pu = np.repeat(zones, len(zones))
    do = np.tile(zones, len(zones))
    distance = np.linspace(0.5, 40.0, len(pu))
    truth = pipeline.predict([features(p, d, x) for p, d, x in zip(pu, do, distance, strict=True)])
    np.testing.assert_allclose(service.predict_arrays(pu, do, distance), truth, rtol=0, atol=1e-9)
    for p, d, x in zip(pu[:9], do[:9], distance[:9], strict=True):
        ride = {"PULocationID": int(p), "DOLocationID": int(d), "trip_distance": float(x)}
        assert service.predict_one(ride) == pytest.approx(
            pipeline.predict([features(p, d, x)])[0], abs=1e-9
        )


def test_a_model_no_shortcut_agrees_with_is_scored_by_its_own_predict() -> None:
    # A float32 vectorizer before a scaler: the float64 sparse build rounds differently from
    # predict, so the service must fall back to the pipeline's own predict, and use it.
    rides = [(p, d, 1.37 + 0.11 * i) for i, (p, d) in enumerate(TABLE_PAIRS * 3)]
    dicts = [{"PU_DO": f"{p}_{d}", "trip_distance": x} for p, d, x in rides]
    durations = [1e3 * ((7 * p + 13 * d) % 60 + 2.0 * x) for p, d, x in rides]
    pipeline = make_pipeline(DictVectorizer(dtype=np.float32), MaxAbsScaler(), LinearRegression())
    service = ModelService(LoadedModel(pipeline.fit(dicts, durations), {"version": "f32"}, "f32"))
    assert service.fast_path == "dict"
    assert [proof.holds for proof in service.proofs] == [False]  # the sparse build disagreed
    pu, do, dist = _rides(500, 9)
    dist = dist + 0.013  # decimals float32 cannot hold
    truth = pipeline.predict(
        [{"PU_DO": f"{p}_{d}", "trip_distance": x} for p, d, x in zip(pu, do, dist, strict=True)]
    )
    np.testing.assert_allclose(service.predict_arrays(pu, do, dist), truth, rtol=0, atol=TOLERANCE)


def test_the_proof_time_is_the_time_the_proof_took(loaded_model: LoadedModel) -> None:
    started = time.perf_counter()
    service = ModelService(loaded_model)
    took = time.perf_counter() - started
    assert 0 < service.proof_seconds <= took


def test_the_sparse_path_builds_no_feature_dicts() -> None:
    # The sparse path's point is to skip a dict per ride and the vectorizer's transform: once
    # the model is loaded, its answers must not depend on that transform at all.
    rides = [(p, d, 1.0 + i % 5) for i, (p, d) in enumerate(TABLE_PAIRS * 3)]
    dicts = [{"PU_DO": f"{p}_{d}", "trip_distance": x} for p, d, x in rides]
    durations = [float((7 * p + 13 * d) % 60) + 2.0 * x for p, d, x in rides]
    pipeline = make_pipeline(DictVectorizer(), MaxAbsScaler(), LinearRegression())
    service = ModelService(LoadedModel(pipeline.fit(dicts, durations), {"version": "s"}, "s"))
    assert service.fast_path == "sparse"
    pu, do, dist = (np.array(column) for column in zip(*rides, strict=True))
    expected = pipeline.predict(dicts)
    pipeline.steps[0][1].vocabulary_ = {}  # transform now maps every ride to no feature
    with pytest.raises(ValueError, match="0 feature"):  # so the dict path would fail
        pipeline.predict(dicts)
    np.testing.assert_allclose(service.predict_arrays(pu, do, dist), expected, rtol=0, atol=1e-9)
