"""The /predict fast path answers exactly as the Flask route would, and hands over the rest."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, request_started
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

from deploy_modes.web.access import ACCESS_LOGGER, REQUEST_ID_HEADER
from deploy_modes.web.fastpath import PredictFastPath
from deploy_modes.web.settings import WebSettings

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}
JSON = "application/json"
Answer = tuple[str, list[tuple[str, str]], bytes]


def _environ(
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/predict",
    content_type: str | None = JSON,
    length: str | None = "auto",
) -> dict[str, Any]:
    """Return a WSGI environ; ``length=None`` leaves Content-Length out (a chunked upload)."""
    builder = EnvironBuilder(path=path, method=method, data=body, content_type=content_type)
    environ = builder.get_environ()
    builder.close()
    environ[f"HTTP_{REQUEST_ID_HEADER.upper().replace('-', '_')}"] = "fixed-id"
    environ["wsgi.input"] = io.BytesIO(body)
    if content_type is None:
        environ.pop("CONTENT_TYPE", None)
    if length is None:
        environ.pop("CONTENT_LENGTH", None)
    elif length != "auto":
        environ["CONTENT_LENGTH"] = length
    return environ


def _call(wsgi: Any, environ: dict[str, Any]) -> Answer:
    body, status, headers = run_wsgi_app(wsgi, environ, buffered=True)
    return status, list(headers.items()), b"".join(body)


@pytest.fixture
def fast(app: Flask) -> PredictFastPath:
    assert isinstance(app.wsgi_app, PredictFastPath)  # create_app installs it
    return app.wsgi_app


@pytest.fixture
def flask_dispatches(app: Flask) -> Iterator[list[str]]:
    """Record every request the Flask app itself dispatched (the fast path sends none)."""
    seen: list[str] = []

    def record(sender: Flask, **extra: object) -> None:
        from flask import request

        seen.append(request.path)

    request_started.connect(record, app)
    yield seen
    request_started.disconnect(record, app)


def _both(fast: PredictFastPath, **kwargs: Any) -> tuple[Answer, Answer]:
    body = kwargs.pop("body")
    return _call(fast, _environ(body, **kwargs)), _call(fast.app, _environ(body, **kwargs))


VALID = [
    pytest.param(json.dumps(RIDE).encode(), id="course-ride"),
    pytest.param(json.dumps({**RIDE, "ride_id": 7}).encode(), id="int-ride-id"),
    pytest.param(json.dumps({**RIDE, "ride_id": "2021/03_1"}).encode(), id="str-ride-id"),
    pytest.param(json.dumps({**RIDE, "ride_id": [1, {"a": None}]}).encode(), id="nested-id"),
    pytest.param(
        b'{"PULocationID": 1, "DOLocationID": 265, "trip_distance": 0.01, "ride_id": NaN}',
        id="nan-ride-id",
    ),
    pytest.param(json.dumps({**RIDE, "PULocationID": "10", "extra": 1}).encode(), id="coerced"),
    pytest.param(json.dumps({**RIDE, "ride_id": None}).encode(), id="null-ride-id"),
    pytest.param(json.dumps({**RIDE, "ride_id": 7**300}).encode(), id="long-int-ride-id"),
    pytest.param(
        b'{"PULocationID": 3, "PULocationID": 10, "DOLocationID": 50, "trip_distance": 4e1,'
        b' "ride_id": {"a": 1, "a": [1e400, -0.0, "\\u00e9\\ud83d\\ude00"]}}',
        id="duplicate-keys-escapes",
    ),
]


@pytest.mark.parametrize("body", VALID)
@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_valid_ride_gets_the_flask_routes_exact_answer_without_flask(
    fast: PredictFastPath, flask_dispatches: list[str], body: bytes, content_type: str
):
    fast_answer = _call(fast, _environ(body, content_type=content_type))
    assert flask_dispatches == []  # answered before Flask
    flask_answer = _call(fast.app, _environ(body, content_type=content_type))
    assert flask_dispatches == ["/predict"]
    assert fast_answer == flask_answer
    status, headers, payload = fast_answer
    assert status == "200 OK"
    assert dict(headers)[REQUEST_ID_HEADER] == "fixed-id"
    assert json.loads(payload)["duration"] > 0


HANDED_OVER = [
    pytest.param({"body": b"{not json"}, id="invalid-json"),
    pytest.param({"body": b"[1, 2]"}, id="array"),
    pytest.param({"body": b""}, id="empty"),
    pytest.param({"body": b"\xff\xfe"}, id="not-utf8"),
    pytest.param({"body": json.dumps({**RIDE, "PULocationID": 0}).encode()}, id="zone-0"),
    pytest.param({"body": json.dumps({**RIDE, "trip_distance": -1}).encode()}, id="negative"),
    pytest.param({"body": json.dumps({"PULocationID": 1}).encode()}, id="missing-fields"),
    pytest.param({"body": json.dumps(RIDE).encode(), "content_type": "text/plain"}, id="text"),
    pytest.param({"body": json.dumps(RIDE).encode(), "content_type": None}, id="no-type"),
    pytest.param(
        {"body": json.dumps(RIDE).encode(), "content_type": "application/vnd.api+json"},
        id="vendor-json",
    ),
    pytest.param({"body": json.dumps(RIDE).encode(), "length": None}, id="chunked"),
    pytest.param({"body": json.dumps(RIDE).encode(), "length": "99999999"}, id="too-large"),
    pytest.param({"body": json.dumps(RIDE).encode(), "length": "1e3"}, id="odd-length"),
    pytest.param({"body": json.dumps(RIDE).encode(), "length": "500"}, id="short-body"),
    pytest.param({"body": json.dumps(RIDE).encode(), "method": "PUT"}, id="put"),
    pytest.param({"body": json.dumps(RIDE).encode(), "path": "/predict/"}, id="slash"),
    pytest.param(
        {"body": json.dumps({"rides": [RIDE]}).encode(), "path": "/predict/batch"}, id="batch"
    ),
    # Valid for Flask's json.loads, refused by pydantic's parser: Flask answers them.
    pytest.param({"body": b"\xef\xbb\xbf" + json.dumps(RIDE).encode()}, id="utf8-bom"),
    pytest.param({"body": json.dumps({**RIDE, "ride_id": "\ud800"}).encode()}, id="surrogate"),
    pytest.param({"body": json.dumps({**RIDE, "pad": "x" * 5000}).encode()}, id="long-body"),
]


@pytest.mark.parametrize("kwargs", HANDED_OVER)
def test_everything_else_is_answered_by_flask_itself(
    fast: PredictFastPath, flask_dispatches: list[str], kwargs: dict[str, Any]
):
    through_fast, flask_only = _both(fast, **kwargs)
    assert len(flask_dispatches) == 2  # both answers came from the Flask app
    assert through_fast == flask_only
    assert through_fast[0] != "500 INTERNAL SERVER ERROR"


# Values Python's json reads, NaN, infinities, long integers and any text included.
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(10**200, 10**300)
    | st.floats()
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_FIELDS = st.sampled_from([0, 1, 74, 265, 266, 74.0, 74.5, "74", " 7 ", -0.0, 500, 500.0001])
_ZONES = st.integers(1, 265) | _FIELDS | _JSON
_DISTANCES = st.floats(0, 500) | _FIELDS | _JSON
# Mostly valid rides (the fast path's case), with any ride_id and extra field.
_RIDES = st.fixed_dictionaries(
    {"PULocationID": _ZONES, "DOLocationID": _ZONES, "trip_distance": _DISTANCES},
    optional={"ride_id": _JSON, "x": _JSON},
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(_RIDES.map(json.dumps), _JSON.map(json.dumps)).map(str.encode) | st.binary())
def test_any_body_gets_the_flask_routes_answer(fast: PredictFastPath, body: bytes):
    through_fast, flask_only = _call(fast, _environ(body)), _call(fast.app, _environ(body))
    assert through_fast == flask_only


def test_a_handed_over_body_is_read_by_flask_in_full(fast: PredictFastPath):
    # The fast path read the body before refusing it; Flask must see every byte again.
    body = json.dumps({**RIDE, "PULocationID": 999, "pad": "x" * 5000}).encode()
    status, _, payload = _call(fast, _environ(body))
    assert status.startswith("422")
    assert json.loads(payload)["field"] == "PULocationID"


def _sample(app: Flask, name: str, **labels: str) -> float:
    registry = app.extensions["deploy_web"]["metrics"].registry
    return registry.get_sample_value(name, labels) or 0.0


def test_the_fast_path_counts_requests_latency_and_predictions(app: Flask, fast: PredictFastPath):
    for _ in range(3):
        _call(fast, _environ(json.dumps(RIDE).encode()))
    _call(fast, _environ(json.dumps({**RIDE, "DOLocationID": 0}).encode()))
    labels = {"endpoint": "/predict", "method": "POST"}
    assert _sample(app, "deploy_web_requests_total", **labels, status="200") == 3
    assert _sample(app, "deploy_web_requests_total", **labels, status="422") == 1
    assert _sample(app, "deploy_web_predictions_total", endpoint="/predict") == 3
    count = _sample(
        app, "deploy_web_request_duration_seconds_count", endpoint="/predict", status="200"
    )
    assert count == 3
    invalid = _sample(
        app, "deploy_web_invalid_rides_total", endpoint="/predict", field="DOLocationID"
    )
    assert invalid == 1


def test_the_fast_path_writes_the_same_access_line(
    fast: PredictFastPath, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        started = time.perf_counter()
        _call(fast, _environ(json.dumps(RIDE).encode()))
        elapsed_ms = (time.perf_counter() - started) * 1000
        _call(fast.app, _environ(json.dumps(RIDE).encode()))
    fast_line, flask_line = [json.loads(r.getMessage()) for r in caplog.records]
    volatile = {"ts", "latency_ms"}
    assert {k: v for k, v in fast_line.items() if k not in volatile} == {
        k: v for k, v in flask_line.items() if k not in volatile
    }
    assert fast_line["status"] == 200 and fast_line["request_id"] == "fixed-id"
    # Measured inside the call: positive, and within the time the whole call took.
    assert 0 < fast_line["latency_ms"] <= elapsed_ms


def test_no_access_line_when_the_access_log_is_off(model_service, caplog: pytest.LogCaptureFixture):
    from deploy_modes.web.app import create_app

    app = create_app(model_service, WebSettings(access_log=False))
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        status, _, _ = _call(app.wsgi_app, _environ(json.dumps(RIDE).encode()))
    assert status == "200 OK"
    assert [r for r in caplog.records if r.name == ACCESS_LOGGER] == []


def test_a_generated_request_id_is_fresh_per_request(fast: PredictFastPath):
    ids = set()
    for _ in range(3):
        environ = _environ(json.dumps(RIDE).encode())
        del environ["HTTP_X_REQUEST_ID"]
        ids.add(dict(_call(fast, environ)[1])[REQUEST_ID_HEADER])
    assert len(ids) == 3 and all(len(i) == 32 for i in ids)
