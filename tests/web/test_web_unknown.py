"""Rides the model knows nothing of are counted in /metrics, never silently the intercept."""

from __future__ import annotations

import logging

import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.scoring import ModelService
from deploy_modes.web.app import create_app
from deploy_modes.web.settings import WebSettings

KNOWN = [(74, 75), (130, 205), (43, 236), (74, 236)]
METRIC = "deploy_web_unknown_rides_total"


def _homework_without_distance() -> ModelService:
    """Return a homework-style model on zone strings only: an unseen ride has no feature."""
    dicts = [{"PULocationID": str(p), "DOLocationID": str(d)} for p, d in KNOWN * 5]
    durations = [float(5 + i % 7 + p % 3) for i, (p, _) in enumerate(KNOWN * 5)]
    pipeline = make_pipeline(DictVectorizer(), LinearRegression()).fit(dicts, durations)
    return ModelService(LoadedModel(pipeline, {"version": "test"}, "homework"))


def _count(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    lines = [line for line in text.splitlines() if line.startswith(METRIC + " ")]
    assert len(lines) == 1, text
    return float(lines[0].split()[1])


def test_unknown_rides_are_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    client = create_app(_homework_without_distance(), WebSettings()).test_client()
    assert _count(client) == 0
    known = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.0}
    assert client.post("/predict", json=known).status_code == 200
    assert _count(client) == 0
    unseen = {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 2.0}
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert client.post("/predict", json=unseen).status_code == 200
    assert _count(client) == 3
    batch = {"rides": [unseen, known, unseen]}
    assert client.post("/predict/batch", json=batch).status_code == 200
    assert _count(client) == 5
    # One log line per doubling, not one per ride. The core's count also holds the readiness
    # probe's ride (zones 1 -> 1), which the metric leaves out: logs at 1, 2 and 4 here.
    lines = [r.getMessage() for r in caplog.records if "no feature the model" in r.getMessage()]
    assert [line.split()[0] for line in lines] == ["1", "2", "4"], lines
