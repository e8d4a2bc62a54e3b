"""``deploy web`` and ``deploy web predict`` through typer's runner and as real processes."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.processes import free_port

if TYPE_CHECKING:  # tests/web/conftest.py; "conftest" is only unique during collection
    from conftest import WebServer

runner = CliRunner()


def _fails_cleanly(args: list[str], message: str, code: int = 1) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("args", [["web"], ["web", "predict"]])
def test_help_has_an_example(args: list[str]):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example: deploy web" in result.output


def test_a_taken_port_is_one_clear_line(model_dir: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["web", "--runtime", "local", "--port", str(port), "--model", str(model_dir)]
        _fails_cleanly(args, f"error: port {port} on 127.0.0.1 is already in use")


def test_a_named_model_that_is_missing_is_not_replaced_by_a_demo(tmp_path: Path):
    missing = tmp_path / "no-model"
    args = ["web", "--runtime", "local", "--port", str(free_port()), "--model", str(missing)]
    _fails_cleanly(args, f"no model at {missing}")
    assert not missing.exists()


def test_a_corrupt_model_is_one_clear_line(model_dir: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((model_dir / "manifest.json").read_text())
    (broken / "model.skops").write_bytes((model_dir / "model.skops").read_bytes()[:100])
    args = ["web", "--runtime", "local", "--port", str(free_port()), "--model", str(broken)]
    _fails_cleanly(args, "does not match the sha256")


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--runtime", "kubernetes"], "is not one of", 2),
        (["--port", "0"], "Invalid value", 2),
        (["--port", "http"], "Invalid value", 2),
        (["--workers", "0"], "Invalid value", 2),
    ],
)
def test_bad_options_are_clear_errors(args: list[str], message: str, code: int):
    _fails_cleanly(["web", *args], message, code)


def test_predict_without_a_server_says_how_to_start_one():
    url = f"http://127.0.0.1:{free_port()}"
    _fails_cleanly(["web", "predict", "--url", url], "start one with `deploy web`")


def test_predict_with_invalid_ride_json_is_refused_locally():
    _fails_cleanly(["web", "predict", "--ride", "{nope"], "--ride is not valid JSON")


@pytest.mark.integration
def test_predict_prints_the_duration(web_server: WebServer, model_service: ModelService):
    result = runner.invoke(app, ["web", "predict", "--url", web_server.url, "--pu", "43"])
    assert result.exit_code == 0, result.output
    expected = model_service.predict_one(
        {"PULocationID": 43, "DOLocationID": 50, "trip_distance": 40}
    )
    assert f"predicted duration: {expected:.2f} min" in result.output


@pytest.mark.integration
@pytest.mark.parametrize(
    ("ride", "message"),
    [
        ({"PULocationID": 0, "DOLocationID": 1, "trip_distance": 1}, "(field PULocationID)"),
        ([1, 2], "must be a JSON object"),
        ({"PULocationID": 1, "DOLocationID": 1, "trip_distance": -3}, "must not be negative"),
    ],
)
def test_predict_reports_the_services_refusal(web_server: WebServer, ride, message: str):
    args = ["web", "predict", "--url", web_server.url, "--ride", json.dumps(ride)]
    _fails_cleanly(args, message)
