"""The real thing: ``deploy web`` runs gunicorn with several workers, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.processes import free_port, wait_http

if TYPE_CHECKING:  # tests/web/conftest.py; "conftest" is only unique during collection
    from conftest import WebServer

pytestmark = pytest.mark.integration

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}


def _metric(url: str, name: str, **labels: str) -> float:
    """Return the sum of samples ``name`` whose labels include ``labels`` (0 when absent)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _access_lines(server: WebServer) -> list[dict]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _workers(server: WebServer) -> list[psutil.Process]:
    """Return the gunicorn workers: the children of the gunicorn master under ``deploy``."""
    (master,) = psutil.Process(server.process.pid).children()
    return master.children()


def _accepted_ports(server: WebServer) -> set[int]:
    """Return the client ports of the connections gunicorn's workers have accepted."""
    ports = set()
    for worker in _workers(server):
        for conn in worker.net_connections(kind="tcp"):
            if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                ports.add(conn.raddr.port)
    return ports


def _wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_the_course_client_works_unchanged(web_server: WebServer, model_service: ModelService):
    # The Zoomcamp's test.py, verbatim apart from the URL.
    ride = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}
    url = f"{web_server.url}/predict"
    response = requests.post(url, json=ride)
    duration = response.json()["duration"]
    assert duration == pytest.approx(model_service.predict_one(ride), rel=1e-12)
    assert response.headers["X-Request-ID"]


def test_metrics_add_up_across_workers_and_survive_a_dead_worker(web_server: WebServer):
    from concurrent.futures import ThreadPoolExecutor

    url = web_server.url
    before = _metric(url, "deploy_web_predictions_total", endpoint="/predict")
    requests_before = _metric(
        url, "deploy_web_requests_total", endpoint="/predict", method="POST", status="200"
    )
    sent = 0

    def one(i: int) -> int:
        ride = {**RIDE, "ride_id": i}
        headers = {"X-Request-ID": f"spread-{i}"}
        return requests.post(f"{url}/predict", json=ride, headers=headers, timeout=30).status_code

    def answering_pids() -> set[int]:
        lines = _access_lines(web_server)
        return {line["pid"] for line in lines if line["request_id"].startswith("spread-")}

    # Keep the load on until both workers have answered: which one accepts is the kernel's call.
    with ThreadPoolExecutor(8) as pool:
        while sent == 0 or len(answering_pids()) < 2:
            assert sent < 4_000, "the second worker never answered"
            assert set(pool.map(one, range(sent, sent + 40))) == {200}
            sent += 40
    assert _metric(url, "deploy_web_predictions_total", endpoint="/predict") == before + sent
    count = _metric(
        url, "deploy_web_requests_total", endpoint="/predict", method="POST", status="200"
    )
    assert count == requests_before + sent
    assert _metric(url, "deploy_web_model_info") == 1.0

    # A worker dies (OOM killer, segfault): gunicorn replaces it and nothing is forgotten.
    victim = _workers(web_server)[0]
    victim.kill()
    victim.wait(10)
    _wait_until(
        lambda: len([w for w in _workers(web_server) if w.pid != victim.pid]) == 2,
        "gunicorn to replace the killed worker",
    )
    wait_http(f"{url}/ready", timeout=30)
    assert _metric(url, "deploy_web_predictions_total", endpoint="/predict") == before + sent


def test_access_log_has_one_json_line_per_request(web_server: WebServer):
    requests.get(f"{web_server.url}/health", headers={"X-Request-ID": "trace-me-7"}, timeout=10)
    _wait_until(
        lambda: any(line["request_id"] == "trace-me-7" for line in _access_lines(web_server)),
        "the access line",
    )
    (line,) = [x for x in _access_lines(web_server) if x["request_id"] == "trace-me-7"]
    assert line["method"] == "GET" and line["path"] == "/health" and line["status"] == 200
    assert {"ts", "latency_ms", "remote_addr", "pid"} <= set(line)


def test_oversized_bodies_are_413_over_real_http(web_server: WebServer):
    big = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    headers = {"Content-Type": "application/json"}
    response = requests.post(f"{web_server.url}/predict", data=big, headers=headers, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]

    def chunks():  # no Content-Length: the limit must hold for a chunked upload too
        yield b'{"pad": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = requests.post(
        f"{web_server.url}/predict/batch", data=chunks(), headers=headers, timeout=30
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error", "field"}


def test_a_full_batch_of_ten_thousand_rides_is_served(web_server: WebServer):
    rides = [{**RIDE, "ride_id": i} for i in range(10_000)]
    response = requests.post(f"{web_server.url}/predict/batch", json={"rides": rides}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert body["invalid"] == 0 and len(body["predictions"]) == 10_000
    assert body["predictions"][-1]["ride_id"] == 9_999


def test_sigterm_lets_requests_in_flight_finish(
    start_web: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
):
    # The uploads stay half sent until SIGTERM is handled: longer than the 10 s body timeout
    # on a loaded box (tests/web/test_web_holes.py tests that timeout).
    monkeypatch.setenv("DEPLOY_WEB_BODY_TIMEOUT", "300")
    server = start_web(workers=2)
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"rides": [RIDE] * 200}).encode()
    head = (
        f"POST /predict/batch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    # Two uploads, half sent: the workers have accepted them and are reading their bodies.
    clients = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
    try:
        for sock in clients:
            sock.sendall(head + body[: len(body) // 2])
        # In flight means a worker accepted it (one still queued in the kernel is not yet).
        mine = {sock.getsockname()[1] for sock in clients}
        _wait_until(lambda: mine <= _accepted_ports(server), "the workers to accept both uploads")

        server.process.popen.send_signal(signal.SIGTERM)
        _wait_until(
            lambda: "Handling signal: term" in server.gunicorn_log.read_text(),
            "gunicorn to get SIGTERM",
        )
        for sock in clients:
            sock.sendall(body[len(body) // 2 :])
            answer = _read_all(sock)
            status_line, _, rest = answer.partition(b"\r\n")
            assert b" 200 " in status_line, answer[:300]
            payload = json.loads(rest.partition(b"\r\n\r\n")[2])
            assert len(payload["predictions"]) == 200 and payload["invalid"] == 0
    finally:
        for sock in clients:
            sock.close()
    assert server.process.popen.wait(60) == 0
    log = server.log()
    assert "Traceback" not in log
    assert "Shutting down: Master" in log and "stopped" in log


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("worker_class", ["asgi", "gthread", "sync"])
def test_the_container_command_serves_and_logs_json(
    model_dir: Path, tmp_path: Path, worker_class: str
):
    port = free_port()
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_WEB_PORT": str(port),
        "DEPLOY_WEB_WORKERS": "2",
        "DEPLOY_WEB_WORKER_CLASS": worker_class,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "gunicorn.log"
    args = [sys.executable, "-m", "gunicorn", "-c", "python:deploy_modes.web.gunicorn_conf"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/ready", timeout=60)
            answer = requests.post(f"{url}/predict", json=RIDE, timeout=10)
            assert answer.status_code == 200 and answer.json()["duration"] > 0
            bad = requests.post(f"{url}/predict", json={**RIDE, "PULocationID": 0}, timeout=10)
            assert bad.status_code == 422 and bad.json()["field"] == "PULocationID"
            assert _metric(url, "deploy_web_predictions_total") == 1.0
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
    text = log_path.read_text()
    access = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    lines = [(a["path"], a["status"]) for a in access][-3:]
    assert lines == [("/predict", 200), ("/predict", 422), ("/metrics", 200)]
    assert "Using worker: deploy_modes.web.workers." in text and "Traceback" not in text
    assert "WARNING" not in text  # e.g. the asgi worker's complaint about a threads setting


def test_the_container_command_with_a_missing_model_says_so_in_one_line(tmp_path: Path):
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(tmp_path / "nowhere"),
        "DEPLOY_WEB_PORT": str(free_port()),
        "DEPLOY_WEB_WORKERS": "1",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "python:deploy_modes.web.gunicorn_conf"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"error: no model at {tmp_path / 'nowhere'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_slow_upload_does_not_hold_up_other_clients(
    start_web: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
):
    # One worker: while one client trickles its body in, the worker keeps answering others
    # (the asgi bridge buffers bodies on the event loop before the app runs). The body timeout
    # is raised so 20 requests on a loaded box fit in it (test_web_holes.py tests the timeout).
    monkeypatch.setenv("DEPLOY_WEB_BODY_TIMEOUT", "300")
    server = start_web(1)
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps(RIDE).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(head + body[:10])
        mine = slow.getsockname()[1]
        _wait_until(lambda: mine in _accepted_ports(server), "the worker to accept the upload")
        for _ in range(20):  # a worker stuck reading the slow body would time these out
            answer = requests.post(f"{server.url}/predict", json=RIDE, timeout=10)
            assert answer.status_code == 200
        slow.sendall(body[10:])
        status_line, _, rest = _read_all(slow).partition(b"\r\n")
    assert b" 200 " in status_line
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["duration"] > 0
