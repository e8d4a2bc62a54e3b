"""Child processes, ports, health checks, the emulator and console helpers, for real."""

from __future__ import annotations

import signal
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy_modes.cli import console as console_module
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import emulator_client, ensure_emulator, is_emulator
from deploy_modes.launch.processes import ManagedProcess, free_port, http_ok, port_in_use, wait_http


@pytest.fixture
def listener() -> Iterator[int]:
    """Return the port of a plain TCP socket that accepts connections but speaks no HTTP."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_free_port_is_free_and_port_in_use_sees_a_listener(listener: int) -> None:
    port = free_port()
    assert 1024 <= port <= 65535 and port != listener
    assert not port_in_use(port)
    assert port_in_use(listener)


@pytest.mark.integration
def test_managed_http_server_answers_then_stops(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "logs" / "http.log"
    server = ManagedProcess.python(
        "http server", ["-m", "http.server", str(port), "--bind", "127.0.0.1"], log_path=log
    )
    with server:
        wait_http(f"http://127.0.0.1:{port}/", timeout=20, process=server)
        assert http_ok(f"http://127.0.0.1:{port}/")
        assert http_ok(f"http://127.0.0.1:{port}/missing")  # a 404 still answers
        assert server.poll() is None
    assert server.poll() is not None
    assert not port_in_use(port)
    assert log.is_file()


def test_wait_http_fails_early_with_the_log_tail(tmp_path: Path) -> None:
    crash = ManagedProcess.python(
        "crasher",
        ["-c", "import sys; print('boom: bad config'); sys.exit(3)"],
        log_path=tmp_path / "crash.log",
    )
    with pytest.raises(DeployError, match="crasher exited with code 3") as info:
        wait_http(f"http://127.0.0.1:{free_port()}/", timeout=60, process=crash)
    assert "boom: bad config" in str(info.value)
    crash.stop()


def test_wait_http_gives_up(listener: int) -> None:
    with pytest.raises(DeployError, match="did not answer within"):
        wait_http(f"http://127.0.0.1:{listener}/", timeout=0.3)


@pytest.mark.parametrize("url", ["not a url", "http://127.0.0.1:1/", "ftp://x"])
def test_http_ok_is_false_for_what_does_not_answer(url: str) -> None:
    assert not http_ok(url, timeout=0.5)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    log = tmp_path / "stubborn.log"
    stubborn = ManagedProcess.python("stubborn", ["-c", script], log_path=log)
    while "ready" not in (log.read_text() if log.exists() else ""):
        assert stubborn.poll() is None
        time.sleep(0.05)
    assert stubborn.stop(timeout=0.5) == -signal.SIGKILL


def test_a_program_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="cannot start ghost"):
        ManagedProcess("ghost", [str(tmp_path / "no-such-program")], log_path=tmp_path / "g.log")


def test_python_uses_this_interpreter(tmp_path: Path) -> None:
    log = tmp_path / "exe.log"
    with ManagedProcess.python(
        "exe", ["-c", "import sys; print(sys.executable)"], log_path=log
    ) as p:
        assert p.popen.wait(timeout=60) == 0
    assert log.read_text().strip() == sys.executable


# -- the emulator -----------------------------------------------------------------------------
@pytest.mark.integration
def test_ensure_emulator_reuses_one_that_answers(moto_server) -> None:
    port = int(moto_server.url.rsplit(":", 1)[1])
    found = ensure_emulator(port=port)
    assert found.url == moto_server.url
    assert not found.started_here
    found.stop()  # not ours: must leave it running
    assert is_emulator(moto_server.url)
    assert found.env()["AWS_ENDPOINT_URL"] == moto_server.url


@pytest.mark.integration
def test_an_http_server_that_is_not_moto_is_not_an_emulator(tmp_path: Path) -> None:
    port = free_port()
    server = ManagedProcess.python(
        "http server",
        ["-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        log_path=tmp_path / "http.log",
    )
    with server:
        wait_http(f"http://127.0.0.1:{port}/", timeout=20, process=server)
        assert not is_emulator(f"http://127.0.0.1:{port}")  # it answers (404), but is not moto
        with pytest.raises(DeployError, match=f"port {port} is taken"):
            ensure_emulator(port=port)


@pytest.mark.integration
def test_emulator_client_carries_its_own_dummy_keys(
    moto_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    s3 = emulator_client("s3", moto_server.url)
    s3.create_bucket(
        Bucket="keys-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "keys-test" in names


def test_ensure_emulator_refuses_a_port_taken_by_something_else(listener: int) -> None:
    with pytest.raises(DeployError, match=f"port {listener} is taken"):
        ensure_emulator(port=listener)


# -- console helpers --------------------------------------------------------------------------
def test_progress_off_a_terminal_prints_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with console_module.progress("scoring", total=1_000) as advance:
        for _ in range(20):
            advance(50)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "scoring: 1,000/1,000"
    assert 5 <= len(lines) <= 10


def test_warnings_as_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with console_module.warnings_as_lines():
        warnings.warn("model is old", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.strip() == "warning: model is old"
