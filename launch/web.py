"""Run the web service locally: gunicorn in the foreground, exactly as the container runs it."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
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
from deploy_modes.launch.registry import forget, record
from deploy_modes.launch.terminal import console, isatty, say

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = ["GUNICORN_ARGS", "check_port", "connect_host", "serve_local"]

# Exactly what the container runs; the settings travel as DEPLOY_WEB_* variables.
GUNICORN_ARGS = [
    "-m",
    "gunicorn",
    "-c",
    "python:deploy_modes.web.gunicorn_conf",  # it also names the app (see wsgi_app there)
]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0  # above gunicorn's graceful_timeout, so in-flight requests finish first


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
    env = {
        "DEPLOY_MODEL_LOCATION": location if is_s3(location) else str(Path(location).resolve()),
        "DEPLOY_WEB_HOST": host,
        "DEPLOY_WEB_PORT": str(port),
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
    try:
        with sigterm_as_interrupt():
            process = ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log_path)
            # `deploy status` and `deploy logs web` find this run through the record.
            entry = record("web", port, log_path)
            with _status(f"starting gunicorn on {host}:{port}"):
                wait_http(f"{url}/ready", timeout=READY_TIMEOUT, process=process)
            _print_ready(url, log_path)
            echo.follow(process)
    except KeyboardInterrupt:
        pass
    finally:
        forget(entry)
        if process is not None and process.poll() is None:
            say("stopping: gunicorn finishes in-flight requests first")
            process.stop(timeout=STOP_TIMEOUT)
        if process is not None:
            echo.pump()  # gunicorn's last words: workers exiting, master shutting down
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if process is not None and process.poll() not in (0, None):
        raise DeployError(f"gunicorn exited with code {process.poll()}; log: {log_path}")
    say("stopped")


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
