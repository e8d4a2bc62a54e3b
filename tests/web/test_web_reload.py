"""Hot reload: ``deploy web reload`` and SIGHUP swap the model under load, real gunicorn only."""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests
from loadclient import PREDICT, RIDE, Load, load_on
from prometheus_client.parser import text_string_to_metric_families

from deploy_modes.core.artifact import LoadedModel, Trust, load_model
from deploy_modes.core.data import month_file
from deploy_modes.core.naming import MODEL_NAME
from deploy_modes.core.training import train_model
from deploy_modes.web.reload import ReloadRequest, ReloadResult

if TYPE_CHECKING:  # tests/web/conftest.py; "conftest" is only unique during collection
    from conftest import WebServer

_V2_RIDE = {
    "inputs": [
        {"name": "PULocationID", "datatype": "INT64", "shape": [1], "data": [10]},
        {"name": "DOLocationID", "datatype": "INT64", "shape": [1], "data": [50]},
        {"name": "trip_distance", "datatype": "FP64", "shape": [1], "data": [40.0]},
    ]
}
# Every endpoint that computes an answer; each answer names the model version that computed it.
_REQUESTS = (
    PREDICT,
    ("/predict/batch", json.dumps({"rides": [RIDE, {**RIDE, "PULocationID": 43}]})),
    (f"/v2/models/{MODEL_NAME}/infer", json.dumps(_V2_RIDE)),
)
NEW_ANSWERS = 30  # answers from the new version the load must see before it stops


def _load_on(server: WebServer) -> AbstractContextManager[Load]:
    """Keep a client sending every kind of request to ``server`` while the block runs."""
    host, port = server.url.removeprefix("http://").split(":")
    return load_on(host, int(port), _REQUESTS)


def _switches(versions: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.pairwise(versions) if a != b]


def _model_info(server: WebServer) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return {
        sample.labels["version"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "deploy_web_model_info"
    }


def _master(server: WebServer) -> psutil.Process:
    (master,) = psutil.Process(server.process.pid).children()
    return master


def _log_lines(server: WebServer, text: str) -> list[str]:
    return [line for line in server.gunicorn_log.read_text().splitlines() if text in line]


@pytest.fixture(scope="module")
def other_model_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a second real duration model (months swapped: another version)."""
    out = tmp_path_factory.mktemp("model") / "ride-duration-2"
    train_model(data_dir / month_file(2021, 2), data_dir / month_file(2021, 1), out)
    return out


def test_a_request_and_a_result_survive_their_files(tmp_path: Path) -> None:
    request = ReloadRequest("/models/next", Trust(pickle=True, types=("a.B",), sha256="ab"))
    request.write(tmp_path / "web-1.reload")
    assert ReloadRequest.take(tmp_path / "web-1.reload") == request
    assert ReloadRequest.take(tmp_path / "web-1.reload") is None  # taken once, never replayed
    result = ReloadResult("id", True, "fine", "new", "old", (12, 13), 0.5)
    result.write(tmp_path / "web-1.reloaded")
    assert ReloadResult.read(tmp_path / "web-1.reloaded") == result


@pytest.mark.integration
@pytest.mark.parametrize("worker_class", ["asgi", "gthread", "sync"])
def test_reload_under_load_switches_once_and_fails_nothing(
    start_web: Callable[..., WebServer],
    other_model_dir: Path,
    loaded_model: LoadedModel,
    monkeypatch: pytest.MonkeyPatch,
    worker_class: str,
) -> None:
    monkeypatch.setenv("DEPLOY_WEB_WORKER_CLASS", worker_class)
    monkeypatch.setenv("DEPLOY_WEB_ACCESS_LOG", "false")  # thousands of lines, none read
    server = start_web(2)
    old, new = loaded_model.version, load_model(other_model_dir).version
    with _load_on(server) as load:
        load.wait_for(old, NEW_ANSWERS)
        started = time.monotonic()
        done = server.deploy("web", "reload", "--model", str(other_model_dir))
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert f"serving version {new} (was {old};" in done.stdout
        load.wait_for(new, NEW_ANSWERS)
    seen = load.seen()
    assert load.failures == []
    assert seen[0] == old and seen[-1] == new
    assert _switches(seen) == [(old, new)], "answers switched back to the old version"
    # The new workers were forked after the swap; the old ones have exited.
    assert len(_master(server).children()) == 2
    assert _model_info(server) == {old: 0.0, new: 1.0}
    assert len(_log_lines(server, f"reload: serving {MODEL_NAME} version {new}")) == 1
    last_old = max(a.sent for a in load.answers if a.version == old)
    first_new = min(a.sent for a in load.answers if a.version == new)
    print(
        f"\n{worker_class}: {len(seen)} answers, 0 failed; `deploy web reload` took {took:.2f} s; "
        f"no answer for {1000 * (first_new - last_old):.0f} ms between the last old and the "
        f"first new one"
    )


@pytest.mark.integration
def test_a_refused_model_leaves_the_old_one_serving(
    start_web: Callable[..., WebServer],
    model_dir: Path,
    loaded_model: LoadedModel,
    tmp_path: Path,
) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / "model.skops").write_bytes(b"not a model")
    course_pickle = tmp_path / "lin_reg.bin"  # the course's (DictVectorizer, estimator) pickle
    steps = loaded_model.pipeline.steps
    course_pickle.write_bytes(pickle.dumps((steps[0][1], steps[-1][1])))
    server = start_web(2)
    old = loaded_model.version
    with _load_on(server) as load:
        load.wait_for(old, 10)
        for bad, why in ((corrupt, "sha256"), (course_pickle, "--trust-pickle")):
            done = server.deploy("web", "reload", "--model", str(bad))
            assert done.returncode == 1
            (line,) = done.stderr.strip().splitlines()  # one line, no traceback
            assert line.startswith("error: reload refused, the server on port ")
            assert f"still serves version {old}: " in line and why in line
            answered = len(load.answers)
            load.wait_for(old, answered + 10)  # still answering, still the old model
    assert load.failures == []
    assert set(load.seen()) == {old}
    refused = _log_lines(server, "reload refused, still serving version")
    assert len(refused) == 2 and "sha256" in refused[0] and "pickle" in refused[1]
    assert "Traceback" not in server.gunicorn_log.read_text()
    # A trusted pickle is the same model: the trust the reload states is the one applied.
    done = server.deploy("web", "reload", "--model", str(course_pickle), "--trust-pickle")
    assert done.returncode == 0, done.stderr


@pytest.mark.integration
def test_sighup_rereads_a_model_overwritten_in_place(
    start_web: Callable[..., WebServer],
    model_dir: Path,
    data_dir: Path,
    loaded_model: LoadedModel,
    tmp_path: Path,
) -> None:
    served = tmp_path / "models" / "ride-duration"
    shutil.copytree(model_dir, served)
    server = start_web(2, model=served)
    old = loaded_model.version
    with _load_on(server) as load:
        load.wait_for(old, 10)
        # `deploy train` writes the new model over the directory the server was started with.
        trained = server.deploy(
            "train",
            "--data-dir",
            str(data_dir),
            "--train-month",
            "2021-02",
            "--val-month",
            "2021-01",
            "--out",
            str(served),
        )
        assert trained.returncode == 0, trained.stderr
        new = load_model(served).version
        assert new != old
        _master(server).send_signal(signal.SIGHUP)  # gunicorn's master, directly: no request
        load.wait_for(new, NEW_ANSWERS)
    assert load.failures == []
    assert _switches(load.seen()) == [(old, new)]
    assert len(_log_lines(server, f"version {new} from {served} (was {old};")) == 1


def test_reload_with_nothing_running_is_one_error_line(tmp_path: Path) -> None:
    deploy = str(Path(sys.executable).parent / "deploy")
    done = subprocess.run(
        [deploy, "web", "reload"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no local web server runs from this folder: start one with: deploy web"
    )
