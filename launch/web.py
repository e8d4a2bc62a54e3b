"""Run the web service locally: gunicorn in the foreground, exactly as the container runs it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import is_s3
from deploy_modes.launch.logs import log_path as log_file
from deploy_modes.launch.processes import (
    ManagedProcess,
    port_in_use,
    sigterm_as_interrupt,
    wait_http,
)
from deploy_modes.launch.registry import (
    ProcessRecord,
    forget,
    live_records,
    process_started,
    record,
    sidecar_path,
)
from deploy_modes.launch.terminal import console, isatty, say

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust
    from deploy_modes.web.reload import ReloadResult

__all__ = [
    "GUNICORN_ARGS",
    "RELOAD_SIDECAR",
    "check_port",
    "connect_host",
    "reload_local",
    "serve_local",
]

# Exactly what the container runs; the settings travel as DEPLOY_WEB_* variables.
GUNICORN_ARGS = [
    "-m",
    "gunicorn",
    "-c",
    "python:deploy_modes.web.gunicorn_conf",  # it also names the app (see wsgi_app there)
]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0  # above gunicorn's graceful_timeout, so in-flight requests finish first
RELOAD_SIDECAR = "reload"  # .deploy/processes/web-<pid>.reload: the next model, for the master
# Loading and proving a model takes about a second; a big forest, or S3, takes longer.
RELOAD_TIMEOUT = 120.0


def check_port(host: str, port: int) -> None:
    """Refuse a port something already listens on (cheap: before any model is trained)."""
    if port_in_use(port, connect_host(host)):
        raise DeployError(
            f"port {port} on {host} is already in use: stop what listens there "
            f"or choose another port with --port"
        )


def serve_local(
    host: str, port: int, workers: int | None, location: str, trust: Trust | None = None
) -> None:
    """Run gunicorn on ``host:port`` serving ``location`` until a signal stops it gracefully.

    ``trust`` (default: the environment's) reaches gunicorn as its ``DEPLOY_*`` variables.
    """
    from deploy_modes.core.artifact import Trust, load_model
    from deploy_modes.core.naming import DURATION

    trust = trust or Trust.from_settings()

    probe_host = connect_host(host)
    check_port(host, port)
    loaded = load_model(location, trust)  # a broken model fails here, in one line, not in gunicorn
    loaded.check_target((DURATION,))  # so does a tip model: the web service answers durations
    say(f"serving {loaded.name} version {loaded.version} from {location}")
    metrics_dir = tempfile.mkdtemp(prefix="deploy-web-metrics-")
    # `deploy web reload` leaves the next model here, next to this process's record.
    reload_file = sidecar_path("web", os.getpid(), RELOAD_SIDECAR).resolve()
    env = {
        "DEPLOY_MODEL_LOCATION": _absolute(location),
        "DEPLOY_WEB_HOST": host,
        "DEPLOY_WEB_PORT": str(port),
        "DEPLOY_WEB_RELOAD_FILE": str(reload_file),
        "DEPLOY_WEB_PARENT_PID": str(os.getpid()),  # a SIGKILL here stops gunicorn too
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "PYTHONUNBUFFERED": "1",  # access lines reach the log as they happen
        **trust.env(),
    }
    if workers is not None:
        env["DEPLOY_WEB_WORKERS"] = str(workers)
    log_path = log_file("web", port)
    echo = _LogEcho(log_path, log_path.stat().st_size if log_path.is_file() else 0)
    url = f"http://{probe_host}:{port}"
    process: ManagedProcess | None = None
    entry = None
    hangup = signal.getsignal(signal.SIGHUP)
    try:
        with sigterm_as_interrupt():
            process = ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log_path)
            # A reload is gunicorn's SIGHUP: `deploy web reload` (or kill -HUP) sends it here.
            signal.signal(signal.SIGHUP, _forward_to(process))
            # `deploy status` and `deploy logs web` find this run through the record.
            entry = record("web", port, log_path)
            with _status(f"starting gunicorn on {host}:{port}"):
                wait_http(f"{url}/ready", timeout=READY_TIMEOUT, process=process)
            _print_ready(url, log_path)
            echo.follow(process)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGHUP, hangup)
        forget(entry)
        reload_file.unlink(missing_ok=True)
        _result_file(reload_file).unlink(missing_ok=True)
        if process is not None and process.poll() is None:
            say("stopping: gunicorn finishes in-flight requests first")
            process.stop(timeout=STOP_TIMEOUT)
        if process is not None:
            echo.pump()  # gunicorn's last words: workers exiting, master shutting down
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if process is not None and process.poll() not in (0, None):
        raise DeployError(f"gunicorn exited with code {process.poll()}; log: {log_path}")
    say("stopped")


def reload_local(
    location: str | None,
    trust: Trust,
    port: int | None = None,
    url: str | None = None,
    timeout: float = RELOAD_TIMEOUT,
) -> ReloadResult:
    """Make the local server load, prove and serve another model; its old workers retire.

    ``location`` None re-reads the location it serves now. Raise DeployError when no server
    runs, when several do and ``port``/``url`` does not pick one, or when the master refuses
    the model (it keeps serving the old one).
    """
    from deploy_modes.web.reload import ReloadRequest, ReloadResult

    entry = _running_server(port, url)
    request_file = entry.sidecar(RELOAD_SIDECAR).resolve()
    if request_file.exists():
        raise DeployError(f"a reload of the server on port {entry.port} is under way already")
    request = ReloadRequest(None if location is None else _absolute(location), trust)
    request.write(request_file)
    os.kill(entry.pid, signal.SIGHUP)  # `deploy web` passes it on to gunicorn's master
    deadline = time.monotonic() + timeout
    while (result := ReloadResult.read(_result_file(request_file))) is None or (
        result.id != request.id
    ):
        if process_started(entry.pid) is None:
            raise DeployError(f"the server on port {entry.port} stopped during the reload")
        if time.monotonic() > deadline:
            request_file.unlink(missing_ok=True)
            raise DeployError(
                f"the server on port {entry.port} did not answer the reload within "
                f"{timeout:.0f}s; its log: {entry.log}"
            )
        time.sleep(0.05)
    if not result.ok:
        raise DeployError(
            f"reload refused, the server on port {entry.port} still serves version "
            f"{result.version}: {result.message}"
        )
    # The switch is done when the old workers are gone: they finish in-flight requests first.
    while any(process_started(pid) is not None for pid in result.old_workers):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return result


def _running_server(port: int | None, url: str | None) -> ProcessRecord:
    """Return the record of the local web server to reload: the only one, or the one named."""
    if url is not None:
        from urllib.parse import urlsplit

        port = urlsplit(url if "://" in url else f"http://{url}").port or port
    servers = [e for e in live_records() if e.mode == "web" and port in (None, e.port)]
    if len(servers) == 1:
        return servers[0]
    if servers:
        ports = ", ".join(str(e.port) for e in servers)
        raise DeployError(f"several web servers run here (ports {ports}): pick one with --port")
    if port is None and _compose_web_runs():
        raise DeployError(
            "the web stack runs under Docker Compose: reload is for the local runtime for now "
            "(restart the stack with `deploy web --runtime compose --model ...`)"
        )
    where = f"on port {port} " if port is not None else ""
    raise DeployError(
        f"no local web server runs {where}from this folder: start one with: deploy web"
    )


def _compose_web_runs() -> bool:
    from deploy_modes.compose.runtime import docker_engine_answers
    from deploy_modes.compose.stack import Stack

    answers, _ = docker_engine_answers()
    return answers and bool(Stack("web").containers())


def _result_file(request_file: Path) -> Path:
    from deploy_modes.web.reload import result_path

    return result_path(request_file)


def _forward_to(process: ManagedProcess) -> Any:
    def forward(signum: int, frame: FrameType | None) -> None:
        if process.poll() is None:
            process.popen.send_signal(signal.SIGHUP)

    return forward


def _absolute(location: str) -> str:
    """Return ``location`` as gunicorn (another working directory, maybe) will find it."""
    return location if is_s3(location) else str(Path(location).resolve())


def connect_host(host: str) -> str:
    """Return the address a client on this machine uses to reach ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _status(message: str) -> contextlib.AbstractContextManager[Any]:
    if isatty():
        return console.status(message)
    say(message)
    return contextlib.nullcontext()


def _print_ready(url: str, log_path: Path) -> None:
    ride = '{"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}'
    console.print(
        f"[bold green]ready[/bold green] at {escape(url)}  (logs also in {escape(str(log_path))})"
    )
    console.print(
        f"try:  curl -s -X POST {url}/predict -H 'Content-Type: application/json' -d '{ride}'",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"also: {url}/health {url}/ready {url}/model {url}/metrics {url}/openapi.json",
        highlight=False,
        soft_wrap=True,
    )
    console.print("press Ctrl-C to stop", highlight=False)


class _LogEcho:
    """Copy what gunicorn appends to its log file to our stdout."""

    def __init__(self, log_path: Path, offset: int) -> None:
        self.log_path = log_path
        self.offset = offset

    def pump(self) -> bool:
        """Print the lines added since the last call; return whether there were any."""
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        if chunk:
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        return bool(chunk)

    def follow(self, process: ManagedProcess) -> None:
        """Echo the log until the process exits."""
        while True:
            if not self.pump():
                if process.poll() is not None:
                    return
                time.sleep(0.2)
