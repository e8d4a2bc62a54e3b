"""A local consumer records itself: ``deploy status`` lists it, ``deploy logs stream`` reads it.

Real processes only: ``deploy stream`` and ``deploy stream consume`` against the session's moto
server, and ``deploy status`` / ``deploy logs`` run in the same folder as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.launch.registry import sweep
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

DEPLOY = str(Path(sys.executable).parent / "deploy")  # the venv's console script


def _env(settings: StreamSettings, model_dir: Path) -> dict[str, str]:
    return {
        "COLUMNS": "200",
        "DEPLOY_RUNTIME": "local",
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": settings.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }


def _start(cwd: Path, env: dict[str, str], *args: str, name: str = "consumer") -> ManagedProcess:
    """Start ``deploy args...`` in ``cwd``; what it prints to its terminal goes to a file."""
    return ManagedProcess(
        name, [DEPLOY, *args], env=env, log_path=cwd / f"{name}.terminal", cwd=cwd
    )


def _deploy(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEPLOY, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _wait(condition: Callable[[], bool], what: str, process: ManagedProcess) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"{process.name} exited early:{process.tail()}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:{process.tail()}")


def _terminal(process: ManagedProcess) -> str:
    assert process.log_path is not None
    return process.log_path.read_text(errors="replace")


def _scored(process: ManagedProcess) -> bool:
    return "50 records:" in _terminal(process)


def test_deploy_stream_is_listed_and_its_log_read_and_followed(
    moto_server: Emulator,
    make_streams: Callable[..., StreamSettings],
    kinesis: Any,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    settings = make_streams(1)
    env = _env(settings, model_dir)
    stream = _start(tmp_path, env, "stream", "--endpoint-url", moto_server.url)
    follower: ManagedProcess | None = None
    try:
        _wait(lambda: "stream mode running" in _terminal(stream), "the consumer", stream)
        send_rides(kinesis, settings.input_stream, generated_rides(50, seed=5))
        _wait(lambda: _scored(stream), "a stats line", stream)

        shown = _deploy(tmp_path, env, "status")
        assert shown.returncode == 0, shown.stderr
        assert f"deploy stream --endpoint-url {moto_server.url}" in shown.stdout
        assert f"running (pid {stream.pid})" in shown.stdout

        logs = _deploy(tmp_path, env, "logs", "stream")
        assert logs.returncode == 0, logs.stderr
        # The emulator and streams coming up, then the consumer's own lines: the terminal's.
        for line in ("AWS emulator already running", "stream mode running", "50 records:"):
            assert line in logs.stdout
        assert "\x1b[" not in logs.stdout  # the file holds plain text, never colour codes
        terminal_lines = [line for line in _terminal(stream).splitlines() if line.strip()]
        logged_lines = {line for line in logs.stdout.splitlines() if line.strip()}
        assert set(terminal_lines) <= logged_lines

        follower = _start(tmp_path, env, "logs", "stream", "-f", name="follower")
        _wait(lambda: "stream mode running" in _terminal(follower), "the follower", follower)
        assert stream.stop(timeout=30) == 0  # SIGTERM: a clean stop, its last line logged
        assert follower.popen.wait(timeout=30) == 0  # the process is gone: -f ends by itself
        assert f"consumer {settings.consumer_name} stopped" in _terminal(follower)
        assert sweep(tmp_path / ".deploy" / "processes") == ([], [])  # its record went with it
    finally:
        stream.stop(timeout=30)
        if follower is not None:
            follower.stop(timeout=10)


def test_a_killed_consumer_s_record_is_cleaned_and_its_log_no_longer_offered(
    make_streams: Callable[..., StreamSettings],
    moto_server: Emulator,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    settings = make_streams(1)
    env = {**_env(settings, model_dir), "DEPLOY_STREAM_ENDPOINT_URL": moto_server.url}
    consumer = _start(tmp_path, env, "stream", "consume")
    try:
        _wait(lambda: "->" in _terminal(consumer), "the consumer", consumer)
        (entry,) = sweep(tmp_path / ".deploy" / "processes")[0]
        assert (entry.mode, entry.pid) == ("stream", consumer.pid)
        logs = _deploy(tmp_path, env, "logs", "stream")
        assert logs.returncode == 0, logs.stderr
        assert f"{settings.input_stream} -> {settings.output_stream}" in logs.stdout

        os.kill(consumer.pid, signal.SIGKILL)  # no chance to remove its record
        consumer.popen.wait()
        shown = _deploy(tmp_path, env, "status")
        assert shown.returncode == 0, shown.stderr
        assert f"removed the record of `deploy stream consume` (pid {consumer.pid})" in (
            shown.stdout
        )
        assert list((tmp_path / ".deploy" / "processes").glob("*.json")) == []
        gone = _deploy(tmp_path, env, "logs", "stream")
        assert gone.returncode == 1
        assert gone.stderr.startswith("error: ") and gone.stderr.count("\n") == 1
        assert "Traceback" not in gone.stderr
    finally:
        consumer.stop(timeout=10)


def test_a_consumer_told_not_to_record_leaves_nothing(
    make_streams: Callable[..., StreamSettings],
    moto_server: Emulator,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    """What the container image sets: docker keeps its logs, no file grows inside it."""
    settings = make_streams(1)
    env = {
        **_env(settings, model_dir),
        "DEPLOY_STREAM_ENDPOINT_URL": moto_server.url,
        "DEPLOY_STREAM_RECORD": "0",
    }
    consumer = _start(tmp_path, env, "stream", "consume")
    try:
        _wait(lambda: "->" in _terminal(consumer), "the consumer", consumer)
        assert not (tmp_path / ".deploy" / "processes").exists()
        assert not (tmp_path / ".deploy" / "logs").exists()
    finally:
        assert consumer.stop(timeout=30) == 0
