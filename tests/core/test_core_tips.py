"""The tip model: trained on the same rides and features, named by its target, refused by
modes that answer durations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import root_mean_squared_error

from deploy_modes.core.artifact import MANIFEST_FILE, load_model
from deploy_modes.core.data import read_trips
from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.core.naming import MODEL_NAME, TARGETS, TIP_AMOUNT, TIP_MODEL_NAME
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.tlc import REQUIRED_COLUMNS
from deploy_modes.core.training import MAX_TIP, prepare, train_model


def _tips(path: Path) -> tuple[list[dict], np.ndarray, dict[str, int]]:
    return prepare(read_trips(path, [*REQUIRED_COLUMNS, TIP_AMOUNT]), TIP_AMOUNT)


def test_the_manifest_names_the_tip_model_and_its_target(tip_model_dir: Path) -> None:
    manifest = json.loads((tip_model_dir / MANIFEST_FILE).read_text())
    assert manifest["name"] == TIP_MODEL_NAME
    assert manifest["features"]["target"] == TIP_AMOUNT
    assert manifest["features"]["target_unit"] == "dollars"
    assert manifest["format"] == "skops"
    assert load_model(tip_model_dir).target == TIP_AMOUNT


def test_the_duration_model_keeps_its_name_and_target(model_dir: Path) -> None:
    loaded = load_model(model_dir)
    assert (loaded.name, loaded.target) == (MODEL_NAME, "duration")


def test_the_tip_model_learns_tips_not_durations(tip_model_dir: Path, val_month_path: Path) -> None:
    dicts, tips, _ = _tips(val_month_path)
    predicted = load_model(tip_model_dir).pipeline.predict(dicts)
    rmse = root_mean_squared_error(tips, predicted)
    manifest = json.loads((tip_model_dir / MANIFEST_FILE).read_text())
    assert manifest["metrics"]["val_rmse"] == pytest.approx(rmse, rel=1e-12)
    assert rmse < float(np.std(tips))  # better than the mean tip: tips grow with the fare
    assert abs(float(np.mean(predicted)) - float(np.mean(tips))) < 0.5  # dollars, not minutes


def test_tips_use_the_duration_models_rides_less_bad_tips(val_month_path: Path) -> None:
    frame = read_trips(val_month_path, [*REQUIRED_COLUMNS, TIP_AMOUNT])
    _, durations, _ = prepare(frame)
    frame.loc[frame.index[:3], TIP_AMOUNT] = [-1.0, np.nan, MAX_TIP + 1]  # refund, null, typo
    _, tips, drops = prepare(frame, TIP_AMOUNT)
    kept_before = len(durations)
    assert drops["tip_out_of_range"] <= 3 and len(tips) == kept_before - drops["tip_out_of_range"]
    assert ((tips >= 0) & (tips <= MAX_TIP)).all()


def test_an_unknown_target_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="unknown target 'tips'"):
        train_model(tmp_path / "no.parquet", tmp_path / "no.parquet", tmp_path / "m", target="tips")
    assert not (tmp_path / "m").exists()


def test_a_duration_mode_refuses_the_tip_model_in_one_line(tip_model_dir: Path) -> None:
    loaded = load_model(tip_model_dir)
    with pytest.raises(ModelLoadError, match="predicts tip_amount, but this mode answers duration"):
        ModelService(loaded)
    service = ModelService(loaded, TARGETS)  # a caller that names each target's answers
    assert service.target == TIP_AMOUNT and service.scoring_path == "linear-table"


def test_the_tip_model_is_scored_through_the_proven_paths(tip_model_dir: Path) -> None:
    service = ModelService(load_model(tip_model_dir), TARGETS)
    pu, do = np.array([74, 75, 130]), np.array([75, 74, 205])
    distance = np.array([1.5, 3.0, 3.66])
    dicts = [
        {"PU_DO": f"{p}_{d}", "trip_distance": float(x)}
        for p, d, x in zip(pu, do, distance, strict=True)
    ]
    got = service.predict_arrays(pu, do, distance)
    assert np.abs(got - service.pipeline.predict(dicts)).max() <= 1e-9
