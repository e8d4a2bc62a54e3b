"""The ASGI bridge: a gunicorn-like scope becomes a PEP 3333 environ, and the answer comes back."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from wsgiref.validate import validator

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy_modes.core.scoring import ModelService
from deploy_modes.web.access import REQUEST_ID_HEADER
from deploy_modes.web.bridge import WSGIBridge
from deploy_modes.web.settings import WebSettings

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}
LIMIT = 1024
Message = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass
class Exchange:
    """What one ASGI call sent, and how often it asked for a message."""

    sent: list[Message] = field(default_factory=list)
    receives: int = 0

    @property
    def status(self) -> int:
        assert self.sent[0]["type"] == "http.response.start"
        return self.sent[0]["status"]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.sent[0]["headers"]

    def header(self, name: bytes) -> bytes:
        (value,) = [v for k, v in self.headers if k == name]
        return value

    @property
    def body(self) -> bytes:
        assert [m["type"] for m in self.sent] == ["http.response.start", "http.response.body"]
        assert self.sent[1].get("more_body", False) is False
        return self.sent[1]["body"]


def _run(
    asgi: WSGIBridge, scope: Message, messages: Iterable[Message], into: Exchange | None = None
) -> Exchange:
    """Call ``asgi`` once; ``receive`` hands out ``messages`` and fails once they run out."""
    pending = iter(messages)
    exchange = Exchange() if into is None else into

    async def receive() -> Message:
        exchange.receives += 1
        try:
            return next(pending)
        except StopIteration:
            raise AssertionError("receive() called after the last message") from None

    async def send(message: Message) -> None:
        exchange.sent.append(message)

    asyncio.run(asgi(scope, receive, send))
    return exchange


def _scope(
    method: str = "GET",
    path: str = "/",
    *,
    root_path: str = "",
    query: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> Message:
    """Return an HTTP scope shaped like gunicorn's asgi worker builds it (path includes root)."""
    full = root_path + path
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": full,
        "raw_path": quote(full).encode("ascii"),
        "query_string": query,
        "root_path": root_path,
        "headers": list(headers),
        "server": ("127.0.0.1", 9696),
        "client": ("127.0.0.1", 5555),
    }


def _body(data: bytes, *, chunk: int | None = None) -> list[Message]:
    """Return the http.request messages carrying ``data``, in chunks of ``chunk`` bytes."""
    if not data or chunk is None:
        return [{"type": "http.request", "body": data, "more_body": False}]
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    last = len(parts) - 1
    return [
        {"type": "http.request", "body": part, "more_body": i < last}
        for i, part in enumerate(parts)
    ]


class Recorder:
    """A tiny WSGI app keeping the environ and body it was given, answering 200 text."""

    def __init__(self) -> None:
        self.calls = 0
        self.environ: dict[str, Any] = {}
        self.input = b""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        self.calls += 1
        self.environ = dict(environ)
        self.input = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or -1))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def _echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


class Result:
    """A WSGI result recording close(); ``fail_after`` chunks, iterating it raises."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_after:
                raise RuntimeError("the app broke mid-body")
            yield chunk

    def close(self) -> None:
        self.closed += 1


# -- environ ------------------------------------------------------------------------------
GUNICORN_HEADERS = [
    (b"host", b"127.0.0.1:9696"),
    (b"user-agent", b"curl/8.5"),
    (b"content-type", b"application/json"),
    (b"content-length", b"15"),
    (b"x_request_id", b"spoofed"),
    (b"x-request-id", b"real-id"),
    (b"accept", b"text/html"),
    (b"accept", b"application/json"),
]


def test_environ_maps_the_request_line_and_addresses() -> None:
    app = Recorder()
    scope = _scope("POST", "/predict", root_path="/api", query=b"a=1&b=%C3%A9")
    _run(WSGIBridge(app, LIMIT), scope, _body(b'{"ride": "one"}'))
    environ = app.environ
    assert environ["REQUEST_METHOD"] == "POST"
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/api", "/predict")
    assert environ["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "9696")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", "5555")
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.multithread"] is False
    assert environ["wsgi.run_once"] is False
    assert app.input == b'{"ride": "one"}'


def test_environ_maps_headers_the_cgi_way() -> None:
    app = Recorder()
    _run(WSGIBridge(app, LIMIT), _scope("POST", headers=GUNICORN_HEADERS), _body(b"{}"))
    environ = app.environ
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "15"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_HOST"] == "127.0.0.1:9696"
    assert environ["HTTP_USER_AGENT"] == "curl/8.5"
    assert environ["HTTP_ACCEPT"] == "text/html,application/json"
    http_keys = sorted(key for key in environ if key.startswith("HTTP_"))
    assert http_keys == ["HTTP_ACCEPT", "HTTP_HOST", "HTTP_USER_AGENT", "HTTP_X_REQUEST_ID"]


def test_an_underscore_header_cannot_spoof_the_request_id() -> None:
    app = Recorder()
    _run(WSGIBridge(app, LIMIT), _scope(headers=GUNICORN_HEADERS), _body(b""))
    assert app.environ["HTTP_X_REQUEST_ID"] == "real-id"
    spoof_only = [(b"x_request_id", b"spoofed"), (b"content_type", b"text/evil")]
    _run(WSGIBridge(app, LIMIT), _scope(headers=spoof_only), _body(b""))
    assert "HTTP_X_REQUEST_ID" not in app.environ
    assert "CONTENT_TYPE" not in app.environ


def test_a_decoded_non_ascii_path_is_latin1_text_of_its_utf8_bytes() -> None:
    app = Recorder()
    scope = _scope(path="/caf\u00e9/\u20ac", root_path="/r\u00e9")
    assert scope["raw_path"] == b"/r%C3%A9/caf%C3%A9/%E2%82%AC"
    _run(WSGIBridge(app, LIMIT), scope, _body(b""))
    assert app.environ["SCRIPT_NAME"] == "/r\u00c3\u00a9"
    assert app.environ["PATH_INFO"] == "/caf\u00c3\u00a9/\u00e2\u0082\u00ac"
    assert app.environ["PATH_INFO"].encode("latin-1") == "/caf\u00e9/\u20ac".encode()


def test_without_a_root_path_the_whole_path_is_path_info() -> None:
    app = Recorder()
    _run(WSGIBridge(app, LIMIT), _scope(path="/predict/batch"), _body(b""))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("", "/predict/batch")


def test_a_path_outside_the_root_path_is_kept_whole() -> None:
    app = Recorder()
    scope = {**_scope(path="/elsewhere"), "root_path": "/api"}
    _run(WSGIBridge(app, LIMIT), scope, _body(b""))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/api", "/elsewhere")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/apiary", "/apiary"), ("/api", ""), ("/api/", "/"), ("/api/x/y", "/x/y")],
)
def test_the_root_path_is_split_off_only_at_a_segment_boundary(path: str, expected: str) -> None:
    app = Recorder()
    scope = {**_scope(path=path), "root_path": "/api"}
    _run(WSGIBridge(app, LIMIT), scope, _body(b""))
    assert (app.environ["SCRIPT_NAME"], app.environ["PATH_INFO"]) == ("/api", expected)


def test_a_scope_without_addresses_gets_wsgi_defaults() -> None:
    app = Recorder()
    scope = _scope()
    del scope["server"], scope["client"]
    _run(WSGIBridge(app, LIMIT), scope, _body(b""))
    assert (app.environ["SERVER_NAME"], app.environ["SERVER_PORT"]) == ("localhost", "80")
    assert "REMOTE_ADDR" not in app.environ
    assert "REMOTE_PORT" not in app.environ


def test_the_environ_passes_the_wsgiref_validator() -> None:
    app = Recorder()
    scope = _scope("POST", "/predict", root_path="/api", headers=GUNICORN_HEADERS)
    exchange = _run(WSGIBridge(validator(app), LIMIT), scope, _body(b'{"ride": "one"}'))
    assert exchange.status == 200
    assert app.calls == 1
    assert app.input == b'{"ride": "one"}'


# -- the response -------------------------------------------------------------------------
def test_the_response_is_one_start_and_one_joined_body() -> None:
    result = Result([b"ab", b"", b"cd", b"e"])

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Custom-Header", "v")])
        return result

    exchange = _run(WSGIBridge(app, LIMIT), _scope(), _body(b""))
    assert exchange.sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"text/plain"), (b"x-custom-header", b"v")],
        },
        {"type": "http.response.body", "body": b"abcde"},
    ]
    assert result.closed == 1


def test_start_response_called_while_iterating_is_honoured() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        yield b"not "
        yield b"here"

    exchange = _run(WSGIBridge(app, LIMIT), _scope(), _body(b""))
    assert exchange.status == 404
    assert exchange.headers == [(b"content-type", b"text/plain")]
    assert exchange.body == b"not here"


def test_the_result_is_closed_when_iterating_it_raises() -> None:
    result = Result([b"a", b"b"], fail_after=1)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return result

    exchange = Exchange()
    with pytest.raises(RuntimeError, match="the app broke mid-body"):
        _run(WSGIBridge(app, LIMIT), _scope(), _body(b""), into=exchange)
    assert result.closed == 1
    assert exchange.sent == []  # nothing half-sent: the server answers 500 itself


def test_the_write_callable_is_refused() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"old style")
        return []

    with pytest.raises(NotImplementedError, match="write"):
        _run(WSGIBridge(app, LIMIT), _scope(), _body(b""))


# -- the body -----------------------------------------------------------------------------
def test_body_chunks_are_joined_before_the_app_runs() -> None:
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": True},
        {"type": "http.request", "body": b"e", "more_body": False},
    ]
    exchange = _run(WSGIBridge(_echo, LIMIT), _scope("POST"), messages)
    assert exchange.body == b"abcde"
    assert exchange.receives == 4


def test_a_message_without_a_body_key_counts_as_empty() -> None:
    messages = [{"type": "http.request", "more_body": True}, {"type": "http.request"}]
    exchange = _run(WSGIBridge(_echo, LIMIT), _scope("POST"), messages)
    assert exchange.body == b""
    assert exchange.receives == 2


def test_a_body_of_exactly_the_limit_is_kept_whole() -> None:
    data = bytes(range(256)) * 4
    assert len(data) == LIMIT
    exchange = _run(WSGIBridge(_echo, LIMIT), _scope("POST"), _body(data, chunk=100))
    assert exchange.body == data
    assert exchange.receives == 11


def test_an_oversized_body_is_cut_one_byte_past_the_limit_and_reading_stops() -> None:
    def endless() -> Iterator[Message]:
        index = 0
        while True:
            yield {"type": "http.request", "body": bytes([65 + index % 26]) * 4, "more_body": True}
            index += 1

    exchange = _run(WSGIBridge(_echo, 10), _scope("POST"), endless())
    assert exchange.body == b"AAAABBBBCCC"  # 11 bytes: max_body_bytes + 1
    assert exchange.receives == 3  # 12 bytes read: no fourth receive()


def test_a_single_oversized_message_is_cut_too() -> None:
    exchange = _run(WSGIBridge(_echo, 10), _scope("POST"), _body(b"x" * 50))
    assert exchange.body == b"x" * 11
    assert exchange.receives == 1


def test_a_disconnect_mid_body_sends_nothing_and_skips_the_app() -> None:
    app = Recorder()
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    exchange = _run(WSGIBridge(app, LIMIT), _scope("POST"), messages)
    assert exchange.sent == []
    assert exchange.receives == 2
    assert app.calls == 0


# -- other scopes -------------------------------------------------------------------------
def test_lifespan_startup_and_shutdown_are_acknowledged() -> None:
    app = Recorder()
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    exchange = _run(WSGIBridge(app, LIMIT), {"type": "lifespan"}, messages)
    assert exchange.sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert exchange.receives == 2
    assert app.calls == 0


def test_a_websocket_is_refused_with_a_close() -> None:
    app = Recorder()
    scope = {**_scope(path="/ws"), "type": "websocket", "scheme": "ws"}
    del scope["method"]
    exchange = _run(WSGIBridge(app, LIMIT), scope, [])
    assert exchange.sent == [{"type": "websocket.close", "code": 1003}]
    assert exchange.receives == 0
    assert app.calls == 0


# -- the real app -------------------------------------------------------------------------
@pytest.fixture
def bridge(app: Flask, web_settings: WebSettings) -> WSGIBridge:
    """Return the bridge around the real app, as ``deploy_modes.web.wsgi`` builds it."""
    return WSGIBridge(app, web_settings.max_body_bytes)


def _json_headers(
    data: bytes, *, length: bool = True, rid: str = "bridge-1"
) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1:9696"), (b"content-type", b"application/json")]
    if length:
        headers.append((b"content-length", str(len(data)).encode()))
    return [*headers, (REQUEST_ID_HEADER.lower().encode(), rid.encode())]


def test_predict_answers_as_the_test_client_does(
    bridge: WSGIBridge, app: Flask, model_service: ModelService
) -> None:
    data = json.dumps(RIDE).encode()
    scope = _scope("POST", "/predict", headers=_json_headers(data))
    exchange = _run(bridge, scope, _body(data))
    expected = app.test_client().post(
        "/predict",
        data=data,
        content_type="application/json",
        headers={REQUEST_ID_HEADER: "bridge-1"},
    )
    assert exchange.status == expected.status_code == 200
    assert json.loads(exchange.body) == expected.get_json()
    assert exchange.body == expected.get_data()
    assert json.loads(exchange.body) == {
        "duration": model_service.predict_one(RIDE),
        "model_version": model_service.version,
    }
    assert exchange.headers == [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in expected.headers.items()
    ]
    assert exchange.header(b"x-request-id") == b"bridge-1"


def test_a_chunked_predict_is_answered_by_the_flask_route(
    bridge: WSGIBridge, model_service: ModelService
) -> None:
    data = json.dumps({**RIDE, "ride_id": "r-7"}).encode()
    scope = _scope("POST", "/predict", headers=_json_headers(data, length=False))
    exchange = _run(bridge, scope, _body(data, chunk=7))
    assert exchange.status == 200
    assert json.loads(exchange.body) == {
        "duration": model_service.predict_one(RIDE),
        "model_version": model_service.version,
        "ride_id": "r-7",
    }


def test_a_chunked_oversized_body_gets_a_json_413(
    bridge: WSGIBridge, web_settings: WebSettings
) -> None:
    limit = web_settings.max_body_bytes
    data = b"[" * (2 * limit)
    scope = _scope("POST", "/predict", headers=_json_headers(data, length=False))
    exchange = _run(bridge, scope, _body(data, chunk=16 * 1024))
    assert exchange.status == 413
    assert exchange.header(b"content-type") == b"application/json"
    assert json.loads(exchange.body) == {
        "error": f"the request body is larger than {limit} bytes",
        "field": None,
    }
    assert exchange.receives == limit // (16 * 1024) + 1  # stopped past the limit, not at 8


def test_a_declared_oversized_body_gets_a_json_413(
    bridge: WSGIBridge, web_settings: WebSettings
) -> None:
    data = b" " * (web_settings.max_body_bytes + 1)
    scope = _scope("POST", "/predict/batch", headers=_json_headers(data))
    exchange = _run(bridge, scope, _body(data))
    assert exchange.status == 413
    assert set(json.loads(exchange.body)) == {"error", "field"}


def test_an_unknown_path_gets_a_json_404(bridge: WSGIBridge) -> None:
    exchange = _run(bridge, _scope("GET", "/nope", headers=[(b"host", b"x")]), _body(b""))
    assert exchange.status == 404
    assert exchange.header(b"content-type") == b"application/json"
    assert json.loads(exchange.body) == {"error": "no such endpoint: /nope", "field": None}


def test_the_app_routes_below_a_root_path(bridge: WSGIBridge) -> None:
    exchange = _run(bridge, _scope("GET", "/health", root_path="/api"), _body(b""))
    assert exchange.status == 200
    assert json.loads(exchange.body) == {"status": "ok"}


# -- property -----------------------------------------------------------------------------
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
FIELDS = st.sampled_from(["PULocationID", "DOLocationID", "trip_distance", "ride_id", "rides"])
DICTS = st.dictionaries(FIELDS | st.text(max_size=8), JSON_LEAVES | st.lists(JSON_LEAVES))
BODIES = st.one_of(
    st.binary(max_size=300),
    DICTS.map(lambda d: json.dumps(d).encode()),
    st.sampled_from([64 * 1024, 64 * 1024 + 1, 100_000]).map(lambda n: b"7" * n),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "x/y+json"]
)
PATHS = st.sampled_from(["/predict", "/predict/batch", "/health", "/metrics", "/"]) | st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=20
).map(lambda text: "/" + text)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=BODIES,
    content_type=CONTENT_TYPES,
    path=PATHS,
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    chunk=st.none() | st.integers(min_value=1, max_value=40_000),
    declare_length=st.booleans(),
)
def test_generated_requests_through_the_bridge_never_get_a_5xx(
    bridge: WSGIBridge,
    body: bytes,
    content_type: str,
    path: str,
    method: str,
    chunk: int | None,
    declare_length: bool,
) -> None:
    headers = [(b"host", b"127.0.0.1:9696")]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    if declare_length:
        headers.append((b"content-length", str(len(body)).encode()))
    exchange = _run(bridge, _scope(method, path, headers=headers), _body(body, chunk=chunk))
    assert exchange.status < 500, exchange.body
    assert exchange.header(b"content-type") == b"application/json"
    answer = json.loads(exchange.body)
    if exchange.status >= 400:
        assert set(answer) == {"error", "field"}
