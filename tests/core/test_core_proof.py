"""Proven shortcuts: each model family scored exactly as its own ``predict``, on every pair.

The models are fitted here on rides whose duration depends strongly on the zone pair, so a
wrong pair column (or a lost coefficient, column 0 included) changes the answer by minutes.
Expected values are computed the way the course's notebooks do it, never by the service.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import (
    GammaRegressor,
    Lasso,
    LinearRegression,
    PoissonRegressor,
    Ridge,
    TweedieRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.proof import IDENTITY_LINK_LINEAR, TOLERANCE, is_identity_linear
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.validation import MAX_ZONE, MIN_ZONE

PAIRS = 150
ROWS = 3_000


def _rides(n: int, seed: int) -> pd.DataFrame:
    """Return rides on a few pairs whose durations differ by up to 40 minutes per pair."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(MIN_ZONE, MAX_ZONE + 1, (PAIRS, 2))
    effect = rng.uniform(0, 40, PAIRS)
    pick = rng.integers(0, PAIRS, n)
    distance = np.round(rng.exponential(3, n), 2)
    return pd.DataFrame(
        {
            "PULocationID": pairs[pick, 0],
            "DOLocationID": pairs[pick, 1],
            "trip_distance": distance,
            "duration": 3 + effect[pick] + 2 * distance + rng.normal(0, 0.5, n),
        }
    )


def _course_dicts(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Return features the course's way (week 4 ``prepare_features``)."""
    df = df.copy()
    df["PU_DO"] = df["PULocationID"].astype(str) + "_" + df["DOLocationID"].astype(str)
    return df[["PU_DO", "trip_distance"]].to_dict(orient="records")


def _homework_dicts(df: pd.DataFrame, distance: bool = True) -> list[dict[str, Any]]:
    """Return features the homework's way: zone IDs cast to strings, one dict per record."""
    categorical = ["PULocationID", "DOLocationID"]
    df = df.copy()
    df[categorical] = df[categorical].astype(str)
    return df[categorical + (["trip_distance"] if distance else [])].to_dict(orient="records")


def _numeric_dicts(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df[["PULocationID", "DOLocationID", "trip_distance"]].to_dict(orient="records")


STYLES = {"course": _course_dicts, "homework": _homework_dicts, "numeric": _numeric_dicts}
TRAIN = _rides(ROWS, 1)


def _service(regressor: Any, style: str = "course", sparse: bool = True, *steps: Any) -> Any:
    dicts = STYLES[style](TRAIN)
    pipeline = make_pipeline(DictVectorizer(sparse=sparse), *steps, regressor)
    pipeline.fit(dicts, TRAIN["duration"].to_numpy())
    return ModelService(LoadedModel(pipeline, {"version": "test"}, "test-model"))


def _vocabulary_rides(service: ModelService) -> pd.DataFrame:
    """Return one ride per known pair (course) or per known zone token (homework)."""
    vocab = service.vectorizer.vocabulary_
    pu_ids = [int(n.split("=")[1]) for n in vocab if n.startswith("PULocationID=")]
    do_ids = [int(n.split("=")[1]) for n in vocab if n.startswith("DOLocationID=")]
    if any(n.startswith("PU_DO=") for n in vocab):
        pairs = [n.split("=")[1].split("_") for n in vocab if n.startswith("PU_DO=")]
        pu_ids, do_ids = [int(p) for p, _ in pairs], [int(d) for _, d in pairs]
    elif pu_ids:
        n = max(len(pu_ids), len(do_ids))
        pu_ids, do_ids = list(np.resize(pu_ids, n)), list(np.resize(do_ids, n))
    else:  # numeric zone IDs: no tokens, so the training pairs themselves
        pairs = TRAIN[["PULocationID", "DOLocationID"]].drop_duplicates()
        pu_ids, do_ids = list(pairs["PULocationID"]), list(pairs["DOLocationID"])
    rng = np.random.default_rng(9)
    return pd.DataFrame(
        {
            "PULocationID": np.array(pu_ids, dtype="int64"),
            "DOLocationID": np.array(do_ids, dtype="int64"),
            "trip_distance": np.round(rng.exponential(3, len(pu_ids)), 2),
        }
    )


def _outside_rides(service: ModelService) -> pd.DataFrame:
    frame = _rides(500, 77)[["PULocationID", "DOLocationID", "trip_distance"]]
    rng = np.random.default_rng(3)
    frame["PULocationID"] = rng.integers(MIN_ZONE, MAX_ZONE + 1, len(frame))
    edges = pd.DataFrame(
        {"PULocationID": [1, 265, 1, 265], "DOLocationID": [1, 265, 265, 1], "trip_distance": 0.0}
    )
    return pd.concat([frame, edges], ignore_index=True)


def _assert_equal_to_predict(service: ModelService, frame: pd.DataFrame, style: str) -> None:
    expected = service.pipeline.predict(STYLES[style](frame))
    got = service.predict_arrays(
        frame["PULocationID"].to_numpy(),
        frame["DOLocationID"].to_numpy(),
        frame["trip_distance"].to_numpy(),
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    for i in range(0, len(frame), max(len(frame) // 25, 1)):
        ride = frame.iloc[i]
        payload = {key: ride[key].item() for key in ("PULocationID", "DOLocationID")}
        payload["trip_distance"] = float(ride["trip_distance"])
        assert abs(service.predict_one(payload) - expected[i]) <= TOLERANCE


MODELS = {
    "linear": (lambda: LinearRegression(), "linear-table"),
    "ridge": (lambda: Ridge(alpha=0.5), "linear-table"),
    "lasso": (lambda: Lasso(alpha=0.001, max_iter=20_000), "linear-table"),
    "poisson": (lambda: PoissonRegressor(max_iter=500), "sparse"),
    "gamma": (lambda: GammaRegressor(max_iter=500), "sparse"),
    "tweedie": (lambda: TweedieRegressor(power=1.5, max_iter=500), "sparse"),
    "tweedie_identity": (lambda: TweedieRegressor(power=0), "sparse"),
    "forest": (lambda: RandomForestRegressor(n_estimators=10, random_state=0), "sparse"),
}


@pytest.mark.parametrize("style", ["course", "homework", "numeric"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_equals_its_own_predict_on_every_pair(name: str, style: str) -> None:
    make, path = MODELS[name]
    # sklearn's coordinate descent refuses DictVectorizer's int64 sparse indices: fit dense.
    service = _service(make(), style, name != "lasso")
    assert service.scoring_path == path, service.scoring_reason
    assert (
        service.scheme.name
        == {
            "course": "pu_do",
            "homework": "zone_tokens",
            "numeric": "zone_ids",
        }[style]
    )
    _assert_equal_to_predict(service, _vocabulary_rides(service), style)
    _assert_equal_to_predict(service, _outside_rides(service), style)


def test_the_pair_matters_in_these_models() -> None:
    # Guards the tests above: a wrong pair column must move predictions by whole minutes.
    service = _service(LinearRegression())
    rides = _vocabulary_rides(service)
    swapped = service.predict_arrays(
        rides["DOLocationID"], rides["PULocationID"], rides["trip_distance"]
    )
    right = service.predict_arrays(
        rides["PULocationID"], rides["DOLocationID"], rides["trip_distance"]
    )
    assert np.abs(swapped - right).max() > 5
    # Column 0 of the vocabulary is a pair with a real coefficient, and it is checked above.
    first = min(service.vectorizer.vocabulary_, key=service.vectorizer.vocabulary_.get)
    assert first.startswith("PU_DO=")
    assert abs(service.estimator.coef_[0]) > 1


def test_glms_are_never_on_the_table_list() -> None:
    for glm in (PoissonRegressor, GammaRegressor, TweedieRegressor):
        assert glm not in IDENTITY_LINK_LINEAR
    service = _service(PoissonRegressor(max_iter=500))
    assert not is_identity_linear(service.estimator)
    assert "not an identity-link linear model" in service.scoring_reason


def test_dense_hist_gradient_boosting_and_a_three_step_pipeline() -> None:
    hgb = _service(HistGradientBoostingRegressor(max_iter=30, random_state=0), "course", False)
    assert hgb.scoring_path == "sparse"
    _assert_equal_to_predict(hgb, _vocabulary_rides(hgb), "course")
    _assert_equal_to_predict(hgb, _outside_rides(hgb), "course")
    scaled = _service(LinearRegression(), "homework", True, MaxAbsScaler())
    assert scaled.scoring_path == "sparse"
    assert "3 steps" in scaled.scoring_reason
    _assert_equal_to_predict(scaled, _vocabulary_rides(scaled), "homework")


def test_a_shortcut_that_disagrees_is_not_used() -> None:
    # A float32 vectorizer: the float64 table and matrix round differently from predict.
    dicts = _course_dicts(TRAIN)
    pipeline = make_pipeline(DictVectorizer(dtype=np.float32), LinearRegression())
    pipeline.fit(dicts, TRAIN["duration"].to_numpy() * 1e3)
    service = ModelService(LoadedModel(pipeline, {}, "f32"))
    failed = [proof for proof in service.proofs if not proof.holds]
    assert failed, "expected the float64 shortcuts to disagree with a float32 pipeline"
    if service.scoring_path == "dict":
        assert "no shortcut agreed" in service.scoring_reason
    _assert_equal_to_predict(service, _outside_rides(service), "course")


def test_the_course_tuple_takes_the_table(course_service: ModelService) -> None:
    assert course_service.scoring_path == "linear-table"
    assert "LinearRegression is linear" in course_service.scoring_reason


def test_homework_without_distance_flags_rides_it_knows_nothing_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dicts = _homework_dicts(TRAIN, distance=False)
    pipeline = make_pipeline(DictVectorizer(), LinearRegression())
    pipeline.fit(dicts, TRAIN["duration"].to_numpy())
    service = ModelService(LoadedModel(pipeline, {}, "hw"))
    assert service.scheme.name == "zone_tokens" and service.scheme.distance_column is None
    known_pu = int(TRAIN["PULocationID"].iloc[0])
    unseen = sorted(set(range(1, 266)) - set(TRAIN["PULocationID"]) - set(TRAIN["DOLocationID"]))
    assert service.unknown_rides == 0
    with caplog.at_level(logging.WARNING, logger="deploy_modes.core.scoring"):
        known = service.predict_one(
            {"PULocationID": known_pu, "DOLocationID": unseen[0], "trip_distance": 1.0}
        )
        assert service.unknown_rides == 0
        intercept = service.predict_one(
            {"PULocationID": unseen[0], "DOLocationID": unseen[1], "trip_distance": 1.0}
        )
        service.predict_arrays(unseen[:3], unseen[3:6], [1.0, 2.0, 3.0])
    assert intercept == pytest.approx(float(service.estimator.intercept_), abs=TOLERANCE)
    assert known != intercept
    assert service.unknown_rides == 4
    assert "no feature the model knows" in caplog.text and f"PU {unseen[0]}" in caplog.text


@pytest.mark.parametrize(
    ("features", "named"),
    [
        ([{"pickup": "74", "dropoff": "75"}], "dropoff=…, pickup=…"),
        ([{"PU_DO": "74_75", "PULocationID": "74"}], "PULocationID=…, PU_DO=…"),
        ([{"trip_distance": 1.0, "passenger_count": 2}], "passenger_count, trip_distance"),
    ],
)
def test_a_vocabulary_of_no_known_scheme_is_refused_naming_its_features(
    features: list[dict[str, Any]], named: str
) -> None:
    pipeline = make_pipeline(DictVectorizer(), LinearRegression())
    pipeline.fit(features * 3, [1.0, 2.0, 3.0])
    with pytest.raises(ModelLoadError, match="match no ride scheme") as info:
        ModelService(LoadedModel(pipeline, {}, "odd-model"))
    message = str(info.value)
    assert message.startswith("odd-model expects features " + named)
    assert "\n" not in message


def test_with_distance_a_ride_of_unseen_zones_is_not_flagged() -> None:
    service = _service(LinearRegression(), "homework")
    unseen = sorted(set(range(1, 266)) - set(TRAIN["PULocationID"]) - set(TRAIN["DOLocationID"]))
    got = service.predict_arrays(unseen[:2], unseen[2:4], [0.0, 3.0])
    assert got[1] - got[0] == pytest.approx(3 * service.estimator.coef_[-1], abs=TOLERANCE)
    assert service.unknown_rides == 0


def test_the_default_model_proof_is_recorded(model_service: ModelService) -> None:
    assert model_service.scoring_path == "linear-table"
    [table] = model_service.proofs
    assert table.holds and table.rides >= len(model_service.vectorizer.vocabulary_)
    assert model_service.proof_seconds > 0
