"""Protocol-level holes, tried with raw sockets against real gunicorn, under every worker class.

Each server runs with short timeouts (1 s) and a small connection cap, so a stalled body, an idle
connection or a flood is answered or closed within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy_modes.launch.processes import free_port, wait_http

pytestmark = pytest.mark.integration

BODY = b'{"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}'
TIMEOUT = 1  # the servers' header, body and keep-alive timeouts, seconds
CAP = 20  # the servers' connections per worker
SLACK = 15.0  # a loaded CI box may be slow to notice; the default timeouts are 10 s


class Server:
    """A real gunicorn (one worker) with short timeouts, and its log."""

    def __init__(self, worker_class: str, port: int, process: subprocess.Popen, log: Path):
        self.worker_class = worker_class
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log_path = log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access(self) -> list[dict]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def worker(self) -> psutil.Process:
        (worker,) = psutil.Process(self.process.pid).children()
        return worker


@contextlib.contextmanager
def _serve(
    worker_class: str, model_dir: Path, directory: Path, **settings: int
) -> Iterator[Server]:
    """Run a real gunicorn (one worker) with ``DEPLOY_WEB_<NAME>`` settings until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_WEB_PORT": str(port),
        "DEPLOY_WEB_WORKERS": "1",
        "DEPLOY_WEB_WORKER_CLASS": worker_class,
        **{f"DEPLOY_WEB_{name.upper()}": str(value) for name, value in settings.items()},
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = directory / "gunicorn.log"
    args = [sys.executable, "-m", "gunicorn", "-c", "python:deploy_modes.web.gunicorn_conf"]
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=120)
        yield Server(worker_class, port, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module", params=["asgi", "gthread", "sync"])
def server(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    worker_class = request.param
    with _serve(
        worker_class,
        model_dir,
        tmp_path_factory.mktemp(f"holes-{worker_class}"),
        body_timeout=TIMEOUT,
        header_timeout=TIMEOUT,
        keepalive=TIMEOUT,
        max_connections=CAP,
    ) as running:
        yield running


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=SLACK)


def _read_until_closed(sock: socket.socket, limit: float = SLACK) -> tuple[bytes, float]:
    """Return everything the server sends until it closes the connection, and how long it took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {limit} s; it sent {data[:200]!r}")
    return data, time.monotonic() - started


def _final(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """Return the last response's status, headers and body (after any 100 Continue)."""
    while response.startswith(b"HTTP/1.1 100"):
        response = response.split(b"\r\n\r\n", 1)[1]
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def _metric(server: Server, name: str, **labels: str) -> float:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _request(method: str, target: str, headers: str = "", body: bytes = b"") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


STALLED = {
    "short-content-length": _request(
        "POST", "/predict", "Content-Type: application/json\r\nContent-Length: 200\r\n", BODY
    ),
    # Not /predict: the Flask route reads a declared-length body itself (the fast path above).
    "short-content-length-batch": _request(
        "POST", "/predict/batch", "Content-Type: application/json\r\nContent-Length: 200\r\n", BODY
    ),
    "chunked-without-terminator": _request(
        "POST",
        "/predict",
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        b"%x\r\n%s\r\n" % (len(BODY), BODY),
    ),
    "expect-100-continue-no-body": _request(
        "POST",
        "/predict",
        "Content-Type: application/json\r\nContent-Length: 60\r\nExpect: 100-continue\r\n",
    ),
}


@pytest.mark.parametrize("case", sorted(STALLED))
def test_a_stalled_body_gets_a_json_408_logged_counted_and_closed(server: Server, case: str):
    before = _metric(server, "deploy_web_requests_total", status="408")
    with _connect(server) as sock:
        sock.sendall(STALLED[case])
        response, seconds = _read_until_closed(sock)  # closed: the connection is freed
    status, headers, body = _final(response)
    assert status == 408, response
    assert headers["content-type"] == "application/json"
    assert "did not arrive within 1 seconds" in json.loads(body)["error"]
    assert seconds >= TIMEOUT * 0.9
    assert _metric(server, "deploy_web_requests_total", status="408") == before + 1
    assert any(line["status"] == 408 for line in server.access())
    assert "request body timeout: POST /predict" in server.log()


def test_unknown_methods_share_one_label_and_a_405_names_its_route(server: Server):
    def series() -> set[tuple]:
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        return {
            tuple(sorted(s.labels.items()))
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "deploy_web_requests_total"
        }

    rng = random.Random(15)
    methods = {"".join(rng.choices(string.ascii_uppercase, k=8)) for _ in range(300)}
    with requests.Session() as session:
        session.request("BREW", f"{server.url}/predict", timeout=10)  # the one "other" series
        known = series()
        for method in methods:
            answer = session.request(method, f"{server.url}/predict", timeout=10)
            assert answer.status_code == 405 and answer.json()["error"]
    after = series()
    assert after == known  # 300 made-up methods, no new series
    other = {"endpoint": "/predict", "method": "other", "status": "405"}
    assert _metric(server, "deploy_web_requests_total", **other) == len(methods) + 1
    requests.delete(f"{server.url}/predict", timeout=10)
    deleted = {"endpoint": "/predict", "method": "DELETE", "status": "405"}
    assert _metric(server, "deploy_web_requests_total", **deleted) == 1


PROTOCOL_ERRORS = {
    "header-too-large": (
        _request("GET", "/health", f"X-Big: {'a' * 10_000}\r\n"),
        431,
    ),
    "too-many-headers": (
        _request("GET", "/health", "".join(f"X-H{i}: 1\r\n" for i in range(200))),
        431,
    ),
    "content-length-with-transfer-encoding": (
        _request("POST", "/predict", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
        + b"0\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_ERRORS))
def test_gunicorn_s_own_errors_are_json(server: Server, case: str):
    raw, expected = PROTOCOL_ERRORS[case]
    with _connect(server) as sock:
        sock.sendall(raw)
        response, _ = _read_until_closed(sock)
    status, headers, body = _final(response)
    assert status == expected, response
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]


def test_an_absolute_form_target_is_answered_like_a_path(server: Server, model_service):
    target = f"http://127.0.0.1:{server.port}/predict"
    headers = f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
    with _connect(server) as sock:
        sock.sendall(_request("POST", target, headers + "Connection: close\r\n", BODY))
        response, _ = _read_until_closed(sock)
    status, _, body = _final(response)
    assert status == 200, response
    assert json.loads(body)["duration"] == model_service.predict_one(json.loads(BODY))


def test_options_answers_204_with_allow_and_no_content_type(server: Server):
    answer = requests.options(f"{server.url}/predict", timeout=10)
    assert answer.status_code == 204
    assert "Content-Type" not in answer.headers
    assert set(answer.headers["Allow"].replace(" ", "").split(",")) == {"OPTIONS", "POST"}


@pytest.mark.parametrize(
    "sent", [b"", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["silent", "half-headers"]
)
def test_an_idle_or_half_sent_connection_is_closed(server: Server, sent: bytes):
    with _connect(server) as sock:
        sock.sendall(sent)
        response, seconds = _read_until_closed(sock)
    assert b"200 OK" not in response
    assert seconds < SLACK
    assert "Traceback" not in server.log()  # a slow client is not a server error


def test_a_kept_alive_connection_is_closed_after_the_keepalive_timeout(server: Server):
    # (The sync worker closes right after the answer: that passes too, at once.)
    with _connect(server) as sock:
        sock.sendall(_request("GET", "/health"))
        first = sock.recv(65536)
        assert b"200" in first.split(b"\r\n", 1)[0]
        _, seconds = _read_until_closed(sock)
    assert seconds < SLACK


def test_connections_over_the_cap_are_not_held(server: Server):
    socks = [_connect(server) for _ in range(CAP * 3)]
    try:
        time.sleep(0.5)
        held = [
            c
            for c in server.worker().net_connections(kind="tcp")
            if c.raddr and c.status == psutil.CONN_ESTABLISHED
        ]
        assert len(held) <= CAP
    finally:
        for sock in socks:
            sock.close()
    # The worker frees a slot once it notices that client gone: until then a new client may
    # get the over-cap 503 (with Retry-After: 1) and, as told, retries. Within SLACK it must
    # be served again (seen in CI on a loaded box: one 503 right after the close).
    deadline = time.monotonic() + SLACK
    while (answer := requests.get(f"{server.url}/health", timeout=SLACK)).status_code == 503:
        assert answer.headers.get("Retry-After") == "1"
        assert time.monotonic() < deadline, "still over the cap after every client left"
        time.sleep(0.2)
    assert answer.status_code == 200


def test_many_stalled_large_bodies_cost_bounded_memory(server: Server):
    worker = server.worker()
    before = worker.memory_info().rss
    head = _request(
        "POST", "/predict", f"Content-Type: application/json\r\nContent-Length: {1 << 20}\r\n"
    )
    half = b" " * (1 << 19)
    socks = []
    peak = before
    try:
        for _ in range(300):
            try:
                sock = _connect(server)
                sock.settimeout(0.2)
                socks.append(sock)
                sock.sendall(head + half)
            except OSError:  # refused, reset or not read: the server is not holding it
                pass
            peak = max(peak, worker.memory_info().rss)
        for _ in range(10):
            time.sleep(0.2)
            peak = max(peak, worker.memory_info().rss)
    finally:
        for sock in socks:
            sock.close()
    assert peak - before < 100 * (1 << 20), f"{(peak - before) >> 20} MiB for 300 stalled bodies"
    assert requests.get(f"{server.url}/health", timeout=SLACK).status_code == 200


FULL = 5  # the capped servers' connections per worker: gthread's 4 threads and one queued
HELD = 20  # their header and keep-alive timeouts, s: idle connections outlast the test
REFUSED = "deploy_web_refused_connections_total"
REFUSAL_LINE = "refused a connection from 127.0.0.1 with a 503"


@pytest.fixture(scope="module", params=["asgi", "gthread"])
def capped(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    worker_class = request.param
    directory = tmp_path_factory.mktemp(f"capped-{worker_class}")
    settings = {"max_connections": FULL, "header_timeout": HELD, "keepalive": HELD}
    with _serve(worker_class, model_dir, directory, **settings) as running:
        yield running


def _client_ports(server: Server, status: str | None = None) -> set[int]:
    """Return the client ports of the worker's connections (with ``status``, or any)."""
    return {
        c.raddr.port
        for c in server.worker().net_connections(kind="tcp")
        if c.raddr and status in (None, c.status)
    }


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SLACK
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_connection_over_the_cap_gets_a_json_503_counted_and_logged(capped: Server):
    before = _metric(capped, REFUSED)
    lines_before = capped.log().count(REFUSAL_LINE)
    # The worker has let go of the connection that asked: only the idle ones will count.
    _wait_until(lambda: not _client_ports(capped), "the worker to close earlier connections")
    idle = [_connect(capped) for _ in range(FULL)]
    try:
        mine = {sock.getsockname()[1] for sock in idle}
        _wait_until(
            lambda: mine <= _client_ports(capped, psutil.CONN_ESTABLISHED),
            "the worker to accept the idle connections",
        )
        with _connect(capped) as over:
            over.sendall(_request("GET", "/health"))
            response, _ = _read_until_closed(over)  # answered, then closed by the server
    finally:
        for sock in idle:
            sock.close()
    status, headers, body = _final(response)
    assert status == 503, response
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "1"
    assert headers["connection"] == "close"
    answer = json.loads(body)
    assert answer["field"] is None and f"limit of {FULL} open connections" in answer["error"]
    # The idle ones are gone: the worker serves again, and /metrics counts the one refusal.
    _wait_until(lambda: not _client_ports(capped), "the worker to close the idle connections")
    assert requests.get(f"{capped.url}/health", timeout=SLACK).status_code == 200
    assert _metric(capped, REFUSED) == before + 1
    assert capped.log().count(REFUSAL_LINE) == lines_before + 1


def test_the_sync_worker_has_no_cap_and_serves_connections_in_turn(model_dir: Path, tmp_path: Path):
    settings = {"max_connections": FULL, "header_timeout": HELD}
    with _serve("sync", model_dir, tmp_path, **settings) as server:
        before = _metric(server, REFUSED)
        _wait_until(lambda: not _client_ports(server), "the worker to close earlier connections")
        idle = [_connect(server) for _ in range(FULL)]
        try:
            first = idle[0].getsockname()[1]
            _wait_until(lambda: _client_ports(server) == {first}, "the first idle connection")
            with _connect(server) as last:
                last.sendall(_request("GET", "/health", "Connection: close\r\n"))
                # One connection at a time: the rest, this request too, wait in the backlog.
                assert _client_ports(server) == {first}
                for sock in idle:
                    sock.close()
                response, _ = _read_until_closed(last)
        finally:
            for sock in idle:
                sock.close()
        status, _, body = _final(response)
        assert status == 200, response
        assert json.loads(body) == {"status": "ok"}
        assert _metric(server, REFUSED) == before  # nothing is refused
        assert REFUSAL_LINE not in server.log()
