"""The reference: the model's own predict in a separate process, and the agreement check."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import PoissonRegressor
from sklearn.pipeline import make_pipeline

from deploy_modes.core.artifact import load_model, save_model
from deploy_modes.core.errors import DeployError
from deploy_modes.core.reference import (
    REFERENCE_COLUMN,
    agreement,
    score_in_separate_process,
)
from deploy_modes.core.scoring import ModelService


def _rides(path: Path, n: int = 400, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rides = {
        "ride_id": np.arange(n),
        "PULocationID": rng.integers(1, 266, n),
        "DOLocationID": rng.integers(1, 266, n),
        "trip_distance": np.round(rng.exponential(3, n), 2),
    }
    pq.write_table(pa.table(rides), path)
    return rides


def _ours(service: ModelService, rides: dict[str, np.ndarray]) -> np.ndarray:
    return service.predict_arrays(
        rides["PULocationID"], rides["DOLocationID"], rides["trip_distance"]
    )


@pytest.mark.integration
def test_the_reference_process_agrees_with_the_service(
    model_dir: Path, model_service: ModelService, tmp_path: Path
) -> None:
    rides = _rides(tmp_path / "rides.parquet")
    score_in_separate_process(str(model_dir), tmp_path / "rides.parquet", tmp_path / "ref.parquet")
    table = pq.read_table(tmp_path / "ref.parquet")
    assert table.column("ride_id").to_pylist() == rides["ride_id"].tolist()
    result = agreement(_ours(model_service, rides), table.column(REFERENCE_COLUMN).to_numpy())
    assert result.holds and result.rides == 400 and result.max_abs_diff <= 1e-9


@pytest.mark.integration
def test_the_reference_catches_a_glm_scored_as_linear(
    training_set: tuple[list[dict], np.ndarray], tmp_path: Path
) -> None:
    dicts, durations = training_set
    pipeline = make_pipeline(DictVectorizer(), PoissonRegressor(max_iter=300))
    pipeline.fit(dicts[:3_000], durations[:3_000])
    save_model(pipeline, tmp_path / "poisson")
    rides = _rides(tmp_path / "rides.parquet")
    score_in_separate_process(
        str(tmp_path / "poisson"), tmp_path / "rides.parquet", tmp_path / "ref.parquet"
    )
    reference = pq.read_table(tmp_path / "ref.parquet").column(REFERENCE_COLUMN).to_numpy()
    service = ModelService(load_model(tmp_path / "poisson"))
    assert agreement(_ours(service, rides), reference).holds
    # What the old shortcut did: coef . x + intercept, no link function.
    x = service.scheme.matrix(rides["PULocationID"], rides["DOLocationID"], rides["trip_distance"])
    wrong = x @ pipeline[-1].coef_ + pipeline[-1].intercept_
    bad = agreement(wrong, reference)
    assert not bad.holds and bad.over_tolerance == 400 and bad.max_abs_diff > 1


def test_agreement_counts_every_disagreement() -> None:
    truth = np.linspace(5, 50, 1_000)
    ours = truth.copy()
    ours[:120] += 1e-6
    result = agreement(ours, truth)
    assert (result.rides, result.over_tolerance) == (1_000, 120)
    assert result.max_abs_diff == pytest.approx(1e-6, rel=1e-3)
    ours[500] = np.nan
    nan = agreement(ours, truth)
    assert nan.over_tolerance == 121 and nan.max_abs_diff == float("inf")
    with pytest.raises(ValueError, match="999 scored rides but 1000"):
        agreement(ours[:-1], truth)


@pytest.mark.integration
def test_a_pickle_reference_needs_trust(course_pickle: Path, tmp_path: Path) -> None:
    rides = _rides(tmp_path / "rides.parquet", n=50)
    with pytest.raises(
        DeployError, match=r"the reference scorer failed: \S+ is a pickle.*runs any code"
    ):
        score_in_separate_process(str(course_pickle), tmp_path / "rides.parquet", tmp_path / "r")
    score_in_separate_process(
        str(course_pickle), tmp_path / "rides.parquet", tmp_path / "r", trust_pickle=True
    )
    dv, model = pickle.loads(course_pickle.read_bytes())
    dicts = [
        {"PU_DO": f"{p}_{d}", "trip_distance": float(x)}
        for p, d, x in zip(
            rides["PULocationID"], rides["DOLocationID"], rides["trip_distance"], strict=True
        )
    ]
    expected = model.predict(dv.transform(dicts))
    got = pq.read_table(tmp_path / "r").column(REFERENCE_COLUMN).to_numpy()
    assert agreement(got, expected).holds


@pytest.mark.integration
def test_bad_rides_are_one_line(model_dir: Path, tmp_path: Path) -> None:
    pq.write_table(pa.table({"PULocationID": [1]}), tmp_path / "odd.parquet")
    with pytest.raises(DeployError, match=r"lacks the column.*DOLocationID, trip_distance"):
        score_in_separate_process(str(model_dir), tmp_path / "odd.parquet", tmp_path / "r")
