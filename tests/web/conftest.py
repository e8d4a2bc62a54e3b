"""Web fixtures: the app built by its factory around the real tiny model, and real servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.web.app import create_app
from deploy_modes.web.settings import WebSettings

DEPLOY = str(Path(sys.executable).parent / "deploy")


@pytest.fixture
def web_settings() -> WebSettings:
    """Return settings with small limits, so limit tests stay small and fast."""
    return WebSettings(max_batch_rides=50, max_body_bytes=64 * 1024, access_log=True)


@pytest.fixture
def app(model_service: ModelService, web_settings: WebSettings) -> Flask:
    """Return the app from its factory, serving the session's real model."""
    return create_app(model_service, web_settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client of the app."""
    return app.test_client()


class WebServer:
    """A real ``deploy web`` process (gunicorn and its workers) on a free loopback port."""

    def __init__(self, process: ManagedProcess, url: str, log_path: Path, gunicorn_log: Path):
        self.process = process
        self.url = url
        self.log_path = log_path
        self.gunicorn_log = gunicorn_log
        self.directory = log_path.parent  # where it runs: its .deploy/processes record

    def deploy(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run ``deploy args...`` where the server runs, as a user in that folder would."""
        return subprocess.run(
            [DEPLOY, *args], cwd=self.directory, capture_output=True, text=True, timeout=timeout
        )

    def log(self) -> str:
        """Return everything the server has printed so far."""
        return self.log_path.read_text(errors="replace")


def _start(model_dir: Path, directory: Path, workers: int, *extra: str) -> WebServer:
    port = free_port()
    log_path = directory / f"deploy-web-{port}.log"
    args = [DEPLOY, "web", "--runtime", "local", "--port", str(port)]
    args += ["--workers", str(workers), "--model", str(model_dir), *extra]
    process = ManagedProcess("deploy web", args, log_path=log_path, cwd=directory)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/ready", timeout=90, process=process)
    except BaseException:
        process.stop()
        raise
    return WebServer(process, url, log_path, directory / ".deploy" / "logs" / f"web-{port}.log")


@pytest.fixture
def start_web(model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Return a function starting ``deploy web`` on a free port; every server is stopped."""
    started: list[WebServer] = []

    def start(workers: int = 2, *extra: str, model: Path | None = None) -> WebServer:
        server = _start(model or model_dir, tmp_path, workers, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.stop(timeout=40)


@pytest.fixture(scope="module")
def web_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """Start one real ``deploy web`` (two gunicorn workers) shared by a test module."""
    server = _start(model_dir, tmp_path_factory.mktemp("web"), 2)
    yield server
    server.process.stop(timeout=40)
