"""Local process records: ``deploy status`` and ``deploy logs`` find ``deploy web`` by them."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy_modes.compose import status
from deploy_modes.launch.processes import ManagedProcess, free_port, port_in_use, wait_http
from deploy_modes.launch.registry import ProcessRecord, process_started, record, sweep

DEPLOY = str(Path(sys.executable).parent / "deploy")


def test_a_running_process_is_live_and_its_record_goes_with_forget(tmp_path: Path) -> None:
    path = record("web", 9877, tmp_path / "web.log", folder=tmp_path)
    assert path is not None
    live, stale = sweep(tmp_path)
    assert [(entry.mode, entry.pid, entry.port) for entry in live] == [("web", os.getpid(), 9877)]
    assert stale == []
    assert live[0].log == str((tmp_path / "web.log").resolve())


def test_a_record_of_a_dead_pid_is_stale_and_removed(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    path = record("web", 9877, None, pid=child.pid, command="deploy web", folder=tmp_path)
    assert path is not None and sweep(tmp_path)[0]  # alive: listed
    child.kill()
    child.wait()
    live, stale = sweep(tmp_path)
    assert live == []
    assert [entry.pid for entry in stale] == [child.pid]
    assert not path.exists()


def test_a_reused_pid_is_stale(tmp_path: Path) -> None:
    """Same pid, another start time: the pid now belongs to another process."""
    started = process_started(os.getpid())
    assert started is not None
    reused = ProcessRecord("web", os.getpid(), 9877, None, "deploy web", started - 100.0)
    (tmp_path / reused.path).write_text(json.dumps(reused.__dict__))
    live, stale = sweep(tmp_path)
    assert live == [] and [entry.command for entry in stale] == ["deploy web"]


def test_an_unreadable_record_is_removed(tmp_path: Path) -> None:
    (tmp_path / "web-1.json").write_text("{not json")
    assert sweep(tmp_path) == ([], [])
    assert not (tmp_path / "web-1.json").exists()


def _deploy(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "DEPLOY_RUNTIME": "local"}
    return subprocess.run(
        [DEPLOY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
def test_status_and_logs_find_a_local_web_and_its_gunicorn_stops_when_it_is_killed(
    model_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    args = [DEPLOY, "web", "--runtime", "local", "--port", str(port), "--workers", "1"]
    args += ["--model", str(model_dir)]
    web = ManagedProcess("deploy web", args, log_path=tmp_path / "terminal.log", cwd=tmp_path)
    gunicorn_pid = None
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=90, process=web)
        shown = _deploy(tmp_path, "status")
        assert shown.returncode == 0, shown.stderr
        assert f"deploy web --runtime local --port {port}" in shown.stdout
        assert f"127.0.0.1:{port}" in shown.stdout and "answers" in shown.stdout

        logs = _deploy(tmp_path, "logs", "web", "--tail", "50")
        assert logs.returncode == 0, logs.stderr
        assert "Listening at" in logs.stdout  # gunicorn's own line, from the recorded log file

        (entry,) = sweep(tmp_path / ".deploy" / "processes")[0]
        assert entry.pid == web.pid
        gunicorn_pid = _child_of(web.pid)
        os.kill(web.pid, signal.SIGKILL)  # no chance to stop gunicorn, nor to remove its record
        web.popen.wait()
        # Its gunicorn, in a session of its own, is told by the kernel (DEPLOY_WEB_PARENT_PID,
        # PR_SET_PDEATHSIG) and stops gracefully: the port is free again.
        _wait_gone(gunicorn_pid, timeout=40)
        assert not port_in_use(port)
        shown = _deploy(tmp_path, "status")
        assert shown.returncode == 0, shown.stderr
        assert f"removed the record of `deploy web --runtime local --port {port}" in shown.stdout
        assert "still answers" not in shown.stdout
        assert list((tmp_path / ".deploy" / "processes").glob("*.json")) == []
        again = _deploy(tmp_path, "status")
        assert "removed the record" not in again.stdout  # cleaned once, for good
        gunicorn_log = (tmp_path / ".deploy" / "logs" / f"web-{port}.log").read_text()
        assert "Shutting down" in gunicorn_log and "Traceback" not in gunicorn_log
    finally:
        web.stop(timeout=40)
        if gunicorn_pid is not None:  # if it outlived the test, it leads its own group
            _kill_group(gunicorn_pid)


def test_status_says_when_a_dead_records_port_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server a gone `deploy web` left behind is said, not hidden (here: a real HTTP server)."""

    class _Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.chdir(tmp_path)
    command = f"deploy web --runtime local --port {port}"
    record("web", port, None, pid=gone.pid, command=command)
    try:
        shown = _deploy(tmp_path, "status")
    finally:
        server.shutdown()
        server.server_close()
    assert shown.returncode == 0, shown.stderr
    assert f"removed the record of `{command}`" in shown.stdout
    assert f"127.0.0.1:{port} still answers" in shown.stdout


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return  # exited; its parent (gone) left it for init to reap
        time.sleep(0.2)
    raise AssertionError(f"gunicorn (pid {pid}) still runs {timeout:.0f}s after deploy web died")


def _child_of(pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError(f"deploy web (pid {pid}) started no gunicorn")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def test_following_a_log_prints_the_last_line_its_process_wrote_before_exiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`deploy logs MODE -f` ends with its process, but only after reading its last words."""
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "stream.log"
    log.write_text("first\n")
    # It writes its last line and exits at once: a follower that stops on seeing it gone
    # without one more read loses that line.
    child = subprocess.Popen(["sh", "-c", f"sleep 1; echo last >> {log}"])
    reaper = threading.Thread(target=child.wait)  # a zombie would still look alive
    reaper.start()
    record("stream", None, log, pid=child.pid, command="deploy stream")
    assert status.logs("stream", follow=True) == 0
    reaper.join()
    assert capsys.readouterr().out == "first\nlast\n"
