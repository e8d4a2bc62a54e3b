"""Core fixtures: extra real models (random forest, a non-plain pipeline) and rides to score."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MaxAbsScaler

from deploy_modes.core.artifact import TREE_TYPES, Trust, load_model, save_model
from deploy_modes.core.data import month_file, read_trips
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.training import prepare, train_model


@pytest.fixture(scope="session")
def train_month_path(data_dir: Path) -> Path:
    """Return the generated training month (2021-01)."""
    return data_dir / month_file(2021, 1)


@pytest.fixture(scope="session")
def val_month_path(data_dir: Path) -> Path:
    """Return the generated validation month (2021-02)."""
    return data_dir / month_file(2021, 2)


@pytest.fixture(scope="session")
def training_set(train_month_path: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Return the course's feature dicts and durations of the training month."""
    dicts, durations, _ = prepare(read_trips(train_month_path))
    return dicts, durations


@pytest.fixture(scope="session")
def forest_service(
    train_month_path: Path, val_month_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModelService:
    """Return a service over a real random forest (a non-linear regressor)."""
    out = tmp_path_factory.mktemp("forest") / "model"
    train_model(train_month_path, val_month_path, out, regressor="random_forest")
    return ModelService(load_model(out, Trust(types=TREE_TYPES)))


@pytest.fixture(scope="session")
def scaled_service(
    training_set: tuple[list[dict[str, Any]], np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> ModelService:
    """Return a service over a 3-step pipeline (vectorizer, scaler, linear): the dict path."""
    dicts, durations = training_set
    pipeline = make_pipeline(DictVectorizer(), MaxAbsScaler(), LinearRegression())
    pipeline.fit(dicts, durations)
    out = tmp_path_factory.mktemp("scaled") / "model"
    save_model(pipeline, out)
    return ModelService(load_model(out))


@pytest.fixture(scope="session")
def dense_service(
    training_set: tuple[list[dict[str, Any]], np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> ModelService:
    """Return a service over a dense vectorizer and a regressor that refuses sparse input."""
    dicts, durations = training_set
    regressor = HistGradientBoostingRegressor(max_iter=10, max_bins=8, random_state=0)
    pipeline = make_pipeline(DictVectorizer(sparse=False), regressor)
    pipeline.fit(dicts[:1_500], durations[:1_500])  # a small fit: it bins every PU_DO column
    out = tmp_path_factory.mktemp("dense") / "model"
    save_model(pipeline, out)
    return ModelService(load_model(out, Trust(types=TREE_TYPES)))


@pytest.fixture(scope="session")
def course_pickle(
    training_set: tuple[list[dict[str, Any]], np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Return a bare ``(DictVectorizer, LinearRegression)`` pickle like the course's lin_reg.bin."""
    dicts, durations = training_set
    dv = DictVectorizer()
    model = LinearRegression().fit(dv.fit_transform(dicts), durations)
    path = tmp_path_factory.mktemp("course") / "lin_reg.bin"
    path.write_bytes(pickle.dumps((dv, model)))
    return path


@pytest.fixture(scope="session")
def course_service(course_pickle: Path) -> ModelService:
    """Return a service over the course's bare tuple pickle (trusted: we just wrote it)."""
    return ModelService(load_model(course_pickle, Trust(pickle=True)))


@pytest.fixture(scope="session")
def sklearn_predict() -> Callable[[Pipeline, Any, Any, Any], np.ndarray]:
    """Return sklearn's own prediction for zone and distance arrays, via the course's dicts."""

    def predict(pipeline: Pipeline, pu: Any, do: Any, dist: Any) -> np.ndarray:
        dicts = [
            {"PU_DO": f"{int(p)}_{int(d)}", "trip_distance": float(x)}
            for p, d, x in zip(pu, do, dist, strict=True)
        ]
        return np.asarray(pipeline.predict(dicts), dtype="float64")

    return predict
