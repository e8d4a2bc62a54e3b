"""``--trust-pickle`` on every command that loads a model, and in every child it starts."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import generate_month, month_file, write_month
from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http

runner = CliRunner()
DEPLOY = str(Path(sys.executable).parent / "deploy")
RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 4.5}


@pytest.fixture(scope="module")
def march(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a small generated 2021-03 month for the batch job."""
    path = tmp_path_factory.mktemp("march") / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=200, seed=3), path)
    return path


def _commands(pickle: Path, march: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "web": ["web", "--runtime", "local", "--port", str(free_port()), "--model", str(pickle)],
        "batch": [
            *("batch", "--runtime", "local", "--month", "2021-03", "--input", str(march)),
            *("--output", str(tmp_path / "out.parquet"), "--model", str(pickle)),
        ],
        "stream consume": [
            *("stream", "consume", "--endpoint-url", f"http://127.0.0.1:{free_port()}"),
            *("--model", str(pickle)),
        ],
        "compare": [
            *("compare", "--rides", "10", "--runtime", "local"),
            *("--out", str(tmp_path / "report"), "--model", str(pickle)),
        ],
    }


@pytest.mark.parametrize("command", ["web", "batch", "stream consume", "compare"])
def test_a_bare_pickle_is_refused_in_one_line(
    command: str,
    bare_pickle: Path,
    march: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPLOY_TRUST_PICKLE", raising=False)
    result = runner.invoke(app, _commands(bare_pickle, march, tmp_path)[command])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    text = " ".join(result.output.split())
    assert "runs any code" in text and "--trust-pickle" in text
    assert not (tmp_path / "out.parquet").exists()


def test_batch_scores_a_trusted_pickle(
    bare_pickle: Path,
    march: Path,
    model_service: ModelService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [*_commands(bare_pickle, march, tmp_path)["batch"], "--trust-pickle"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert len(table) > 100
    # The same numbers as the skops artifact the pickle was made from, ride by ride.
    rides = pq.read_table(march).to_pandas()
    for ride_id, duration in zip(table["ride_id"], table["predicted_duration"], strict=True):
        row = rides.iloc[int(ride_id.rsplit("_", 1)[1])]
        ride = {k: row[k] for k in ("PULocationID", "DOLocationID", "trip_distance")}
        assert abs(duration - model_service.predict_one(ride)) <= 1e-9, ride_id


def test_a_wrong_external_digest_is_refused_everywhere(
    model_dir: Path, march: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    commands = _commands(model_dir, march, tmp_path)
    for name, args in commands.items():
        result = runner.invoke(app, [*args, "--model-sha256", "0" * 64])
        assert result.exit_code == 1, (name, result.output)
        assert "Traceback" not in result.output, name
        assert "sha256" in result.output, (name, result.output)


@pytest.mark.integration
def test_web_serves_a_trusted_pickle_through_gunicorn(
    bare_pickle: Path, model_service: ModelService, tmp_path: Path
) -> None:
    port = free_port()
    args = [DEPLOY, "web", "--runtime", "local", "--port", str(port), "--workers", "1"]
    args += ["--model", str(bare_pickle), "--trust-pickle"]
    # The parent's env grants nothing: only the option can reach the gunicorn workers.
    env = {"DEPLOY_TRUST_PICKLE": "0", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "web.log"
    with ManagedProcess("deploy web", args, env=env, log_path=log, cwd=tmp_path) as process:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=90, process=process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(RIDE).encode(),
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            answer = json.loads(response.read())
    assert abs(answer["duration"] - model_service.predict_one(RIDE)) <= 1e-9
    assert "Traceback" not in log.read_text()
