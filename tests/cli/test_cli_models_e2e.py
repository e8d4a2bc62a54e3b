"""End to end: a GLM and a homework-style model give their own ``predict`` in every mode.

Each model is fitted into ``tmp_path`` the way its users fit it, saved as a skops artifact,
then served by real gunicorn, scored by ``deploy batch`` and consumed from a real moto server.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression, PoissonRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.artifact import save_model
from deploy_modes.core.data import generate_month, month_file, write_month
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.launch.web import GUNICORN_ARGS

DEPLOY = str(Path(sys.executable).parent / "deploy")
TOLERANCE = 1e-9
# A handful of rides: common zones, a long trip, a short one, a pair no model has seen.
RIDES = [(74, 75, 2.1), (130, 205, 3.66), (43, 236, 1.2), (1, 265, 18.0), (264, 264, 0.2)]


def _course(frame: pd.DataFrame) -> list[dict[str, Any]]:
    pu_do = frame["PULocationID"].astype(str) + "_" + frame["DOLocationID"].astype(str)
    return [
        {"PU_DO": p, "trip_distance": float(d)}
        for p, d in zip(pu_do, frame["trip_distance"], strict=True)
    ]


def _homework(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the homework notebooks' features: zone IDs as strings, plus the distance."""
    df = frame[["PULocationID", "DOLocationID", "trip_distance"]].copy()
    df[["PULocationID", "DOLocationID"]] = df[["PULocationID", "DOLocationID"]].astype(str)
    return df.to_dict(orient="records")


STYLES = {"glm": _course, "homework": _homework}


def _durations(frame: pd.DataFrame) -> np.ndarray:
    minutes = frame["lpep_dropoff_datetime"] - frame["lpep_pickup_datetime"]
    return minutes.dt.total_seconds().to_numpy() / 60


@pytest.fixture(scope="module", params=["glm", "homework"])
def fitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Return (name, artifact dir, pipeline) for a model fitted the way its users fit it."""
    frame = generate_month(2021, 1, rows=3_000, seed=11)
    durations = _durations(frame)
    keep = (durations >= 1) & (durations <= 60)
    frame, durations = frame[keep], durations[keep]
    regressor = PoissonRegressor(max_iter=300) if request.param == "glm" else LinearRegression()
    pipeline = make_pipeline(DictVectorizer(), regressor)
    pipeline.fit(STYLES[request.param](frame), durations)
    out = tmp_path_factory.mktemp(request.param) / "model"
    save_model(pipeline, out)
    return request.param, out, pipeline


def _truth(name: str, pipeline: Pipeline, rides: list[tuple[int, int, float]]) -> np.ndarray:
    frame = pd.DataFrame(rides, columns=["PULocationID", "DOLocationID", "trip_distance"])
    return np.asarray(pipeline.predict(STYLES[name](frame)), dtype="float64")


def _ride(pu: int, do: int, distance: float) -> dict[str, Any]:
    return {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance}


@pytest.mark.integration
def test_web_gives_the_models_own_predict(fitted: Any, tmp_path: Path) -> None:
    name, model, pipeline = fitted
    port = free_port()
    env = {
        "DEPLOY_MODEL_LOCATION": str(model),
        "DEPLOY_WEB_HOST": "127.0.0.1",
        "DEPLOY_WEB_PORT": str(port),
        "DEPLOY_WEB_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    answers = []
    log = tmp_path / "gunicorn.log"
    with ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log) as process:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=90, process=process)
        for ride in RIDES:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict",
                data=json.dumps(_ride(*ride)).encode(),
                headers={"Content-Type": "application/json"},
            )
            with opener.open(request, timeout=30) as response:
                answers.append(json.loads(response.read())["duration"])
    truth = _truth(name, pipeline, RIDES)
    assert len(np.unique(truth)) == len(RIDES)  # the rides matter: not one constant answer
    np.testing.assert_allclose(answers, truth, rtol=0, atol=TOLERANCE)


def test_batch_gives_the_models_own_predict(
    fitted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, model, pipeline = fitted
    monkeypatch.chdir(tmp_path)
    month = tmp_path / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=60, seed=5), month)
    out = tmp_path / "out.parquet"
    args = ["batch", "--runtime", "local", "--month", "2021-03", "--input", str(month)]
    result = CliRunner().invoke(app, [*args, "--output", str(out), "--model", str(model)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pandas()
    rides = pq.read_table(month).to_pandas()
    rows = [int(ride_id.rsplit("_", 1)[1]) for ride_id in table["ride_id"]]
    assert len(rows) > 20
    picked = rides.iloc[rows]
    columns = (picked["PULocationID"], picked["DOLocationID"], picked["trip_distance"])
    wanted = list(zip(*columns, strict=True))
    truth = _truth(name, pipeline, wanted)
    np.testing.assert_allclose(table["predicted_duration"], truth, rtol=0, atol=TOLERANCE)


def _consume(
    model: Path, rides: list[tuple[int, int, float]], moto_server: Emulator, tmp_path: Path
) -> tuple[list[float], str]:
    """Run ``deploy stream consume`` on a real moto server; return its answers and its log."""
    from deploy_modes.stream.kinesis import ensure_streams
    from deploy_modes.stream.rides import follow_records, send_rides

    suffix = uuid.uuid4().hex[:8]
    names = {
        "DEPLOY_STREAM_INPUT_STREAM": f"e2e_rides_{suffix}",
        "DEPLOY_STREAM_OUTPUT_STREAM": f"e2e_predictions_{suffix}",
        "DEPLOY_STREAM_DLQ_STREAM": f"e2e_dlq_{suffix}",
    }
    kinesis = moto_server.client("kinesis")
    ensure_streams(kinesis, list(names.values()), 1, say=lambda _m: None)
    env = {
        **moto_server.env(),
        **names,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(tmp_path / "c.sqlite"),
        "PYTHONUNBUFFERED": "1",
    }
    args = [DEPLOY, "stream", "consume", "--endpoint-url", moto_server.url, "--model", str(model)]
    events = [{"ride": _ride(*ride), "ride_id": i} for i, ride in enumerate(rides)]
    found: dict[int, float] = {}
    log = tmp_path / "consume.log"
    with ManagedProcess("deploy stream consume", args, env=env, log_path=log) as process:
        send_rides(kinesis, names["DEPLOY_STREAM_INPUT_STREAM"], events)
        deadline = time.monotonic() + 60
        while len(found) < len(rides):
            assert process.poll() is None, process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.3)
            output = names["DEPLOY_STREAM_OUTPUT_STREAM"]
            for data in follow_records(kinesis, output, follow=False):
                prediction = json.loads(data)["prediction"]
                found[prediction["ride_id"]] = prediction["ride_duration"]
        assert process.stop(sig=signal.SIGTERM) == 0
    return [found[i] for i in range(len(rides))], log.read_text()


@pytest.mark.integration
def test_the_stream_consumer_gives_the_models_own_predict(
    fitted: Any, moto_server: Emulator, tmp_path: Path
) -> None:
    name, model, pipeline = fitted
    answers, _ = _consume(model, RIDES, moto_server, tmp_path)
    np.testing.assert_allclose(answers, _truth(name, pipeline, RIDES), rtol=0, atol=TOLERANCE)


@pytest.mark.integration
def test_the_stream_consumer_answers_and_logs_unknown_rides(
    moto_server: Emulator, tmp_path: Path
) -> None:
    known = [(74, 75), (130, 205), (43, 236), (74, 236)]
    dicts = [{"PULocationID": str(p), "DOLocationID": str(d)} for p, d in known * 5]
    durations = [float(5 + i % 7 + p % 3) for i, (p, _) in enumerate(known * 5)]
    pipeline = make_pipeline(DictVectorizer(), LinearRegression()).fit(dicts, durations)
    model = tmp_path / "homework-no-distance"
    save_model(pipeline, model)
    unseen = [(1, 2, 1.0), (3, 4, 2.0), (5, 6, 3.0)]
    answers, text = _consume(model, [(74, 75, 1.0), *unseen], moto_server, tmp_path)
    intercept = float(pipeline[-1].intercept_)
    assert answers[1:] == [pytest.approx(intercept, abs=1e-9)] * 3  # answered, and flagged:
    lines = [line for line in text.splitlines() if "no feature the model knows" in line]
    # One batch of three such rides: one line with the count (the next at 4, 8, ...).
    assert len(lines) == 1, text
    assert lines[0].startswith("3 ride(s) so far") and "e.g. PU 1, DO 2" in lines[0], text
