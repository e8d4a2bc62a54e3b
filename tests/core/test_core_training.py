"""Training: the course's model, other regressors by name, the recorded RMSE, the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error
from sklearn.tree import DecisionTreeRegressor

from deploy_modes.core.artifact import MANIFEST_FILE, MODEL_FILE, load_model
from deploy_modes.core.data import generate_month, month_file, read_trips, write_month
from deploy_modes.core.demo import ensure_model, ensure_month
from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.training import REGRESSORS, make_regressor, prepare, train_model


def test_rmse_is_recorded_and_matches_the_saved_model(
    model_dir: Path, val_month_path: Path
) -> None:
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    dicts, durations, _ = prepare(read_trips(val_month_path))
    predicted = load_model(model_dir).pipeline.predict(dicts)
    rmse = root_mean_squared_error(durations, predicted)
    assert manifest["metrics"]["val_rmse"] == pytest.approx(rmse, rel=1e-12)
    assert manifest["regressor"] == "linear"
    assert manifest["estimator"].endswith("LinearRegression")


def test_the_model_learns_something(model_dir: Path, val_month_path: Path) -> None:
    # Beats predicting the mean duration: the generator's durations depend on the features.
    _, durations, _ = prepare(read_trips(val_month_path))
    baseline = float(np.std(durations))
    rmse = json.loads((model_dir / MANIFEST_FILE).read_text())["metrics"]["val_rmse"]
    assert rmse < 0.8 * baseline


def test_progress_messages(train_month_path: Path, val_month_path: Path, tmp_path: Path) -> None:
    said: list[str] = []
    train_model(train_month_path, val_month_path, tmp_path / "m", progress=said.append)
    assert any("fitting linear" in line for line in said)
    assert any("validation RMSE" in line for line in said)


def test_random_forest(forest_service: ModelService) -> None:
    manifest = forest_service.model.manifest
    assert manifest["regressor"] == "random_forest"
    assert manifest["estimator"].endswith("RandomForestRegressor")
    assert manifest["metrics"]["val_rmse"] > 0


def test_dotted_path_regressor(
    train_month_path: Path, val_month_path: Path, tmp_path: Path
) -> None:
    result = train_model(
        train_month_path, val_month_path, tmp_path / "tree", "sklearn.tree.DecisionTreeRegressor"
    )
    assert isinstance(result.pipeline.steps[-1][1], DecisionTreeRegressor)
    assert result.manifest["regressor"] == "sklearn.tree.DecisionTreeRegressor"
    assert (tmp_path / "tree" / MODEL_FILE).is_file()


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_every_registered_regressor_is_fresh(name: str) -> None:
    first, second = make_regressor(name), make_regressor(name)
    assert first is not second
    assert hasattr(first, "fit") and hasattr(first, "predict")


def test_dotted_path_to_a_class() -> None:
    assert isinstance(make_regressor("sklearn.linear_model.LinearRegression"), LinearRegression)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "xgboost",
        "linear_regression",
        "no.such.module.Regressor",
        "sklearn.linear_model.NoSuchRegressor",
        "os.system",  # a function: must never be called
        "builtins.dict",  # a class without fit/predict
        "sklearn.linear_model",
        ".LinearRegression",
    ],
)
def test_unknown_regressor_is_a_clear_error(name: str) -> None:
    with pytest.raises(DeployError, match="unknown regressor") as info:
        make_regressor(name)
    assert "linear, random_forest" in str(info.value)


def test_regressor_needing_arguments_is_a_clear_error() -> None:
    with pytest.raises(DeployError, match="cannot be created without arguments"):
        make_regressor("sklearn.ensemble.VotingRegressor")


def test_unknown_regressor_fails_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="unknown regressor"):
        train_model(tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "m", "nope")


def test_regressor_that_refuses_sparse_input(
    train_month_path: Path, val_month_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(DeployError, match="failed to fit"):
        train_model(
            train_month_path,
            val_month_path,
            tmp_path / "m",
            "sklearn.ensemble.HistGradientBoostingRegressor",
        )
    assert not (tmp_path / "m").exists()


def test_a_month_with_no_usable_ride(val_month_path: Path, tmp_path: Path) -> None:
    frame = generate_month(2021, 1, rows=50)
    frame["lpep_dropoff_datetime"] = frame["lpep_pickup_datetime"]  # every duration is 0
    bad = tmp_path / "bad.parquet"
    write_month(frame, bad)
    with pytest.raises(DeployError, match=r"has no ride with a duration of 1\.\.60 minutes"):
        train_model(bad, val_month_path, tmp_path / "m")
    with pytest.raises(DeployError, match=r"has no ride with a duration of 1\.\.60 minutes"):
        train_model(val_month_path, bad, tmp_path / "m")


def test_training_on_a_non_parquet_file(val_month_path: Path, tmp_path: Path) -> None:
    text = tmp_path / "trips.csv"
    text.write_text("PULocationID,DOLocationID\n1,2\n")
    with pytest.raises(DataError, match="not a readable parquet file"):
        train_model(text, val_month_path, tmp_path / "m")


def test_prepare_counts_every_drop_reason() -> None:
    frame = generate_month(2021, 1, rows=1_000, seed=5)
    frame["PULocationID"] = frame["PULocationID"].astype("float64")
    frame.loc[0, "PULocationID"] = np.nan
    frame.loc[1, "DOLocationID"] = 300
    frame.loc[2, "trip_distance"] = np.nan
    frame.loc[3, "trip_distance"] = 900.0
    dicts, durations, drops = prepare(frame)
    assert drops["missing_zone"] == 1
    assert drops["zone_out_of_range"] == 1
    assert drops["missing_distance"] == 1
    assert drops["distance_out_of_range"] == 1
    assert drops["duration_out_of_range"] > 0
    assert len(dicts) == len(durations) == 1_000 - sum(drops.values())
    assert set(dicts[0]) == {"PU_DO", "trip_distance"}


# -- the demo model ---------------------------------------------------------------------------
def test_demo_model_is_trained_once_saying_so(tmp_path: Path) -> None:
    settings = CoreSettings(
        model_location=str(tmp_path / "models" / "demo"),
        data_dir=tmp_path / "data",
        demo_rows=2_000,
    )
    said: list[str] = []
    location = ensure_model(settings, said.append)
    assert location == settings.model_location
    assert any("training a demo model" in line for line in said)
    assert any("generating 2,000 demo rides" in line for line in said)
    assert (tmp_path / "data" / month_file(2021, 1)).is_file()
    version = load_model(location).version
    said.clear()
    assert ensure_model(settings, said.append) == location
    assert said == []  # nothing trained the second time
    assert load_model(location).version == version


def test_ensure_month_keeps_an_existing_file(tmp_path: Path) -> None:
    said: list[str] = []
    first = ensure_month(tmp_path, "2021-03", 100, 1, said.append)
    assert first == str(tmp_path / month_file(2021, 3))  # a location, as for a URL data dir
    stamp = Path(first).stat().st_mtime_ns
    assert ensure_month(tmp_path, "2021-03", 100, 1, said.append) == first
    assert Path(first).stat().st_mtime_ns == stamp and len(said) == 1
    with pytest.raises(DataError, match="YYYY-MM"):
        ensure_month(tmp_path, "March", 100, 1, said.append)
    with pytest.raises(DataError, match=r"^--train-month must look like YYYY-MM"):
        ensure_month(tmp_path, "2021-13", 100, 1, said.append, "--train-month")


def test_a_bad_demo_month_is_named_and_nothing_is_generated(tmp_path: Path) -> None:
    settings = CoreSettings(
        model_location=str(tmp_path / "models" / "demo"),
        data_dir=tmp_path / "data",
        val_month="2021-2",
        demo_rows=100,
    )
    with pytest.raises(DataError, match=r"^DEPLOY_VAL_MONTH must look like YYYY-MM"):
        ensure_model(settings, print)
    assert not (tmp_path / "data").exists()  # the good train month was not generated either
