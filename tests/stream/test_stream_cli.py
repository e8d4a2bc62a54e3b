"""``deploy stream`` and its subcommands: help, the happy path, and every kind of bad input."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import predictions_by_id
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import month_file
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess, free_port, port_in_use
from deploy_modes.stream.settings import StreamSettings

COMMANDS = ["", "consume", "init", "send", "tail"]


def _env(settings: StreamSettings, model_dir: Path | None = None) -> dict[str, str]:
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": str(settings.endpoint_url),
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": settings.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
    }
    if model_dir is not None:
        env["DEPLOY_MODEL_LOCATION"] = str(model_dir)
    return env


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["stream", *args], env=env)


def _clean_error(result: Any, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert "error:" in result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = _invoke(*([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


@pytest.mark.integration
def test_init_send_tail(make_streams: Any, kinesis: Any, data_dir: Path) -> None:
    settings: StreamSettings = make_streams(2)
    env = _env(settings)
    # Fresh names the streams do not have yet: init creates them.
    env["DEPLOY_STREAM_INPUT_STREAM"] += "_new"
    result = _invoke("init", "--shards", "3", env=env)
    assert result.exit_code == 0, result.output
    assert "streams ready" in result.output
    shards = kinesis.list_shards(StreamName=settings.input_stream + "_new")["Shards"]
    assert len(shards) == 3

    env = _env(settings)
    result = _invoke("send", "--count", "120", "--rate", "2000", env=env)
    assert result.exit_code == 0, result.output
    assert "sent 120 rides" in result.output
    parquet = data_dir / month_file(2021, 1)
    result = _invoke("send", "--input", str(parquet), "--count", "30", "--first-id", "500", env=env)
    assert result.exit_code == 0, result.output
    assert "sent 30 rides" in result.output

    # tail reads the output stream: put two events there directly.
    from deploy_modes.stream.kinesis import put_records
    from deploy_modes.stream.service import OutputRecord

    put_records(kinesis, settings.output_stream, [OutputRecord(b'{"n": 1}', "1")] * 3)
    result = _invoke("tail", "--no-follow", "--limit", "2", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ['{"n": 1}', '{"n": 1}']
    result = _invoke("tail", "--no-follow", "--dead-letters", env=env)
    assert result.exit_code == 0
    assert result.output == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "--endpoint-url", "not a url"], "--endpoint-url must be http(s)://host:port"),
        (["init", "--endpoint-url", "ftp://x"], "--endpoint-url must be http(s)://host:port"),
    ],
)
def test_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    _clean_error(_invoke(*args), message)


@pytest.mark.parametrize(
    "args",
    [
        ["send", "--count", "0"],
        ["send", "--count", "many"],
        ["send", "--count", "99999999999"],
        ["send", "--rate", "-5"],
        ["init", "--shards", "0"],
        ["init", "--shards", "1000"],
        ["tail", "--limit", "0"],
    ],
)
def test_out_of_range_and_wrong_typed_options_are_usage_errors(args: list[str]) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.integration
def test_missing_or_broken_input_file_is_a_clear_error(
    streams: StreamSettings, tmp_path: Path
) -> None:
    result = _invoke("send", "--input", str(tmp_path / "nope.parquet"), env=_env(streams))
    _clean_error(result, "nope.parquet")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    _clean_error(_invoke("send", "--input", str(broken), env=_env(streams)), "broken.parquet")
    wrong = tmp_path / "wrong.parquet"
    import pandas as pd

    pd.DataFrame({"a": [1, 2]}).to_parquet(wrong)
    _clean_error(_invoke("send", "--input", str(wrong), env=_env(streams)), "PULocationID")


@pytest.mark.integration
def test_missing_stream_is_a_clear_error(streams: StreamSettings) -> None:
    env = _env(streams) | {"DEPLOY_STREAM_OUTPUT_STREAM": "never_created"}
    _clean_error(_invoke("tail", "--no-follow", env=env), "does not exist")
    env = _env(streams) | {"DEPLOY_STREAM_INPUT_STREAM": "never_created"}
    _clean_error(_invoke("send", "--count", "5", env=env), "does not exist")


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    for args in (["init"], ["tail", "--no-follow"], ["send", "--count", "3"]):
        _clean_error(_invoke(*args, env=env), "Could not connect to the endpoint URL")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEPLOY_STREAM_BATCH_SIZE", "lots"),
        ("DEPLOY_STREAM_BATCH_SIZE", "0"),
        ("DEPLOY_STREAM_CHECKPOINT_STORE", "redis"),
        ("DEPLOY_STREAM_POLL_INTERVAL", "-1"),
    ],
)
def test_bad_settings_from_the_environment_are_one_line(variable: str, value: str) -> None:
    result = _invoke("consume", env={variable: value})
    _clean_error(result, f"invalid setting: {variable}=")


def test_consume_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "DEPLOY_MODEL_LOCATION": str(tmp_path / "no-model"),
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(tmp_path / "c.sqlite"),
    }
    result = _invoke("consume", env=env)
    assert result.exit_code == 1
    assert "error:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.integration
def test_bare_command_runs_the_consumer_until_sigterm(
    moto_server: Emulator, streams: StreamSettings, kinesis: Any, model_dir: Path, tmp_path: Path
) -> None:
    from deploy_modes.stream.rides import generated_rides, send_rides

    deploy = str(Path(sys.executable).parent / "deploy")
    args = [deploy, "stream", "--runtime", "local", "--shards", "2", "--consumer-name", "cli"]
    env = _env(streams, model_dir) | {"PYTHONUNBUFFERED": "1"}
    log = tmp_path / "stream.log"
    with ManagedProcess("deploy stream", args, env=env, log_path=log) as process:
        send_rides(kinesis, streams.input_stream, generated_rides(50, seed=8))
        deadline = time.monotonic() + 60
        while len(predictions_by_id(kinesis, streams.output_stream)) < 50:
            assert process.poll() is None, process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.2)
        assert process.stop(sig=signal.SIGTERM) == 0
    text = log.read_text()
    assert "stream mode running" in text
    assert "deploy stream send" in text  # says what to do next
    assert "already running" in text  # it used the emulator that answered, started none


@pytest.mark.integration
def test_bare_command_starts_and_stops_its_own_emulator(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    deploy = str(Path(sys.executable).parent / "deploy")
    endpoint = f"http://127.0.0.1:{port}"
    args = [deploy, "stream", "--runtime", "local", "--endpoint-url", endpoint, "--count", "30"]
    env = {"DEPLOY_MODEL_LOCATION": str(model_dir), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "stream.log"
    with ManagedProcess("deploy stream", args, env=env, log_path=log, cwd=tmp_path) as process:
        deadline = time.monotonic() + 60
        while "30 records: 30 predictions" not in log.read_text():
            assert process.poll() is None, process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.2)
        assert process.stop(sig=signal.SIGTERM) == 0
    text = log.read_text()
    assert f"AWS emulator started at http://127.0.0.1:{port}" in text
    assert "created stream ride_events (2 shards)" in text
    assert "stream mode running" in text
    assert "sent 30 demo rides to ride_events" in text
    assert "stopping the AWS emulator we started" in text
    assert not port_in_use(port)
    assert (tmp_path / ".deploy/stream/checkpoints.sqlite").is_file()


@pytest.mark.integration
def test_an_emulator_needs_no_keys_and_none_leak_into_the_environment(
    streams: StreamSettings, tmp_path: Path
) -> None:
    """With no AWS keys configured, the emulator's dummy keys go to the clients, not os.environ."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | _env(streams)
    env |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    probe = (
        "import os, sys\n"
        "from typer.testing import CliRunner\n"
        "from deploy_modes.cli.main import app\n"
        "result = CliRunner().invoke(app, ['stream', 'send', '--count', '3'])\n"
        "print(result.output)\n"
        "sys.exit(result.exit_code or ('AWS_ACCESS_KEY_ID' in os.environ) * 3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sent 3" in done.stdout
