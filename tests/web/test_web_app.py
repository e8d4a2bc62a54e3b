"""The app through Flask's test client: every endpoint, and every kind of bad input."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deploy_modes.core.artifact import LoadedModel
from deploy_modes.core.features import ride_features
from deploy_modes.core.scoring import ModelService
from deploy_modes.web.app import ACCESS_LOGGER, REQUEST_ID_HEADER, create_app
from deploy_modes.web.settings import WebSettings

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}


def _post(client: FlaskClient, path: str, body: object, **kwargs: object):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def _assert_json_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "field"}
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    assert body["field"] == field
    return body


# -- the course's contract ----------------------------------------------------------------
def test_predict_answers_the_course_contract(client: FlaskClient, loaded_model: LoadedModel):
    response = _post(client, "/predict", RIDE)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"duration", "model_version"}
    assert body["model_version"] == loaded_model.version
    expected = loaded_model.pipeline.predict([ride_features(10, 50, 40.0)])[0]
    assert body["duration"] == pytest.approx(expected, rel=1e-12)


def test_predict_echoes_a_ride_id(client: FlaskClient):
    body = _post(client, "/predict", {**RIDE, "ride_id": "abc-1"}).get_json()
    assert body["ride_id"] == "abc-1"


def test_predict_accepts_the_vendor_json_content_type(client: FlaskClient):
    response = client.post(
        "/predict", data=json.dumps(RIDE), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


def test_batch_predicts_every_ride_and_echoes_ids(client: FlaskClient, model_service):
    rides = [
        {"PULocationID": pu, "DOLocationID": do, "trip_distance": d, "ride_id": f"r{i}"}
        for i, (pu, do, d) in enumerate([(1, 2, 0.5), (43, 151, 1.8), (265, 265, 12.0)])
    ]
    response = _post(client, "/predict/batch", {"rides": rides})
    assert response.status_code == 200
    body = response.get_json()
    assert body["invalid"] == 0
    assert body["model_version"] == model_service.version
    assert [p["ride_id"] for p in body["predictions"]] == ["r0", "r1", "r2"]
    assert [p["index"] for p in body["predictions"]] == [0, 1, 2]
    for ride, prediction in zip(rides, body["predictions"], strict=True):
        assert prediction["duration"] == pytest.approx(model_service.predict_one(ride))


def test_batch_reports_one_invalid_ride_by_index(client: FlaskClient):
    rides = [RIDE, {**RIDE, "trip_distance": -1, "ride_id": 7}, "not a ride", RIDE]
    body = _post(client, "/predict/batch", {"rides": rides}).get_json()
    assert body["invalid"] == 2
    good, negative, scalar, last = body["predictions"]
    assert good["duration"] > 0 and "error" not in good and "ride_id" not in good
    assert negative == {
        "index": 1,
        "duration": None,
        "ride_id": 7,
        "error": "trip_distance must not be negative",
        "field": "trip_distance",
    }
    assert scalar["index"] == 2 and scalar["duration"] is None and scalar["field"] is None
    assert last["index"] == 3 and last["duration"] == good["duration"]


def test_batch_of_nothing_is_an_empty_answer(client: FlaskClient):
    body = _post(client, "/predict/batch", {"rides": []}).get_json()
    assert body["predictions"] == [] and body["invalid"] == 0


def test_batch_over_the_limit_is_refused(client: FlaskClient, web_settings: WebSettings):
    rides = [RIDE] * (web_settings.max_batch_rides + 1)
    body = _assert_json_error(_post(client, "/predict/batch", {"rides": rides}), 413, "rides")
    assert str(web_settings.max_batch_rides) in body["error"]


def test_batch_at_the_limit_is_served(client: FlaskClient, web_settings: WebSettings):
    rides = [RIDE] * web_settings.max_batch_rides
    assert len(_post(client, "/predict/batch", {"rides": rides}).get_json()["predictions"]) == 50


@pytest.mark.parametrize("body", [{}, {"rides": None}, {"rides": {"a": 1}}, {"rides": "x"}])
def test_batch_without_a_rides_array_is_refused(client: FlaskClient, body: object):
    _assert_json_error(_post(client, "/predict/batch", body), 422, "rides")


# -- operational endpoints ----------------------------------------------------------------
def test_health_and_ready(client: FlaskClient, model_service: ModelService):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/ready").get_json()
    assert ready["status"] == "ready" and ready["model_version"] == model_service.version


def test_model_answers_the_manifest(client: FlaskClient, loaded_model: LoadedModel):
    assert client.get("/model").get_json() == loaded_model.manifest


def test_metrics_count_requests_predictions_and_model(client: FlaskClient, model_service):
    for _ in range(3):
        _post(client, "/predict", RIDE)
    _post(client, "/predict", {**RIDE, "PULocationID": 0})
    _post(client, "/predict/batch", {"rides": [RIDE, RIDE, {}]})
    client.get("/no-such-page")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    lines = set(text.splitlines())
    assert 'deploy_web_requests_total{endpoint="/predict",method="POST",status="200"} 3.0' in lines
    assert 'deploy_web_requests_total{endpoint="/predict",method="POST",status="422"} 1.0' in lines
    unmatched = 'deploy_web_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0'
    assert unmatched in lines
    assert 'deploy_web_predictions_total{endpoint="/predict"} 3.0' in lines
    assert 'deploy_web_predictions_total{endpoint="/predict/batch"} 2.0' in lines
    assert 'deploy_web_invalid_rides_total{endpoint="/predict",field="PULocationID"} 1.0' in lines
    assert (
        'deploy_web_request_duration_seconds_count{endpoint="/predict",status="200"} 3.0' in lines
    )
    model_line = (
        f'deploy_web_model_info{{name="{model_service.name}",'
        f'version="{model_service.version}"}} 1.0'
    )
    assert model_line in lines


def test_openapi_documents_every_route_and_its_errors(app: Flask, client: FlaskClient):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # werkzeug's <name> is OpenAPI's {name}
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert routes == set(document["paths"])
    for path in ("/predict", "/predict/batch"):
        operation = document["paths"][path]["post"]
        assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
        assert operation["requestBody"]["required"] is True
    ride = document["components"]["schemas"]["Ride"]
    assert ride["required"] == ["PULocationID", "DOLocationID", "trip_distance"]
    assert (
        document["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]["properties"]["rides"]["maxItems"]
        == 50
    )


def test_app_never_runs_in_debug_mode(app: Flask):
    assert app.debug is False


def test_ready_is_503_when_the_model_cannot_predict(
    loaded_model: LoadedModel, web_settings: WebSettings
):
    broken = copy.deepcopy(loaded_model)
    broken.pipeline.steps[-1][1].intercept_ = math.nan  # a model that predicts NaN for all
    client = create_app(ModelService(broken), web_settings).test_client()
    body = _assert_json_error(client.get("/ready"), 503)
    assert "start-up check" in body["error"]
    assert client.get("/health").status_code == 200


def test_an_unexpected_error_is_a_json_500_without_traceback(app: Flask):
    def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode", view_func=explode)
    body = _assert_json_error(app.test_client().get("/explode"), 500)
    assert "secret internals" not in body["error"]


# -- request ids and access logs ----------------------------------------------------------
def test_request_id_is_honoured_and_echoed(client: FlaskClient):
    response = _post(client, "/predict", RIDE, headers={REQUEST_ID_HEADER: "req-42.a:b"})
    assert response.headers[REQUEST_ID_HEADER] == "req-42.a:b"


@pytest.mark.parametrize("given", [None, "", "a b", "x" * 129, "evil\u00e9", 'a"b'])
def test_a_missing_or_unsafe_request_id_is_replaced(client: FlaskClient, given: str | None):
    headers = {} if given is None else {REQUEST_ID_HEADER: given}
    response = client.get("/health", headers=headers)
    generated = response.headers[REQUEST_ID_HEADER]
    assert generated != given and len(generated) == 32 and generated.isalnum()


def test_every_request_writes_one_json_access_line(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        started = time.perf_counter()
        _post(client, "/predict", RIDE, headers={REQUEST_ID_HEADER: "trace-1"})
        elapsed_ms = (time.perf_counter() - started) * 1000
        client.get("/missing/\u00e9\npath")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 2
    first, second = lines
    assert first["method"] == "POST" and first["path"] == "/predict"
    assert first["status"] == 200 and first["request_id"] == "trace-1"
    # Measured inside the request: positive, and within the time the whole call took.
    assert 0 < first["latency_ms"] <= elapsed_ms
    assert second["status"] == 404
    assert all("\n" not in r.getMessage() for r in caplog.records)


# -- bad input: always a JSON error with the right 4xx ------------------------------------
BAD_BODIES = [
    pytest.param(b"{not json", 400, None, id="invalid-json"),
    pytest.param(b"", 400, None, id="empty-body"),
    pytest.param(b"   ", 400, None, id="blank-body"),
    pytest.param(b"[1, 2]", 400, None, id="array"),
    pytest.param(b"42", 400, None, id="number"),
    pytest.param(b'"ride"', 400, None, id="string"),
    pytest.param(b"null", 400, None, id="null"),
    pytest.param(b"true", 400, None, id="boolean"),
    pytest.param(b"\xff\xfe\x00garbage", 400, None, id="not-utf8"),
    pytest.param(b"[" * 30_000 + b"]" * 30_000, 400, None, id="nested-too-deep"),
    pytest.param(b'{"PULocationID": ' + b"9" * 5000 + b"}", 400, None, id="huge-int-literal"),
]

BAD_RIDES = [
    ({"DOLocationID": 50, "trip_distance": 4}, "PULocationID"),
    ({"PULocationID": 10, "trip_distance": 4}, "DOLocationID"),
    ({"PULocationID": 10, "DOLocationID": 50}, "trip_distance"),
    ({}, "PULocationID"),
    ({**RIDE, "PULocationID": None}, "PULocationID"),
    ({**RIDE, "PULocationID": "abc"}, "PULocationID"),
    ({**RIDE, "PULocationID": True}, "PULocationID"),
    ({**RIDE, "PULocationID": [10]}, "PULocationID"),
    ({**RIDE, "PULocationID": {"id": 10}}, "PULocationID"),
    ({**RIDE, "PULocationID": 10.5}, "PULocationID"),
    ({**RIDE, "PULocationID": 0}, "PULocationID"),
    ({**RIDE, "PULocationID": 266}, "PULocationID"),
    ({**RIDE, "PULocationID": -1}, "PULocationID"),
    ({**RIDE, "DOLocationID": 10**30}, "DOLocationID"),
    ({**RIDE, "DOLocationID": "9" * 50}, "DOLocationID"),
    ({**RIDE, "trip_distance": -0.1}, "trip_distance"),
    ({**RIDE, "trip_distance": 500.01}, "trip_distance"),
    ({**RIDE, "trip_distance": 10**400}, "trip_distance"),
    ({**RIDE, "trip_distance": "4"}, "trip_distance"),
    ({**RIDE, "trip_distance": False}, "trip_distance"),
    ({**RIDE, "trip_distance": None}, "trip_distance"),
]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize(("data", "status", "field"), BAD_BODIES)
def test_malformed_bodies_are_json_4xx(client: FlaskClient, path, data, status, field):
    response = client.post(path, data=data, content_type="application/json")
    _assert_json_error(response, status, field)


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_wrong_content_type_is_415(client: FlaskClient, path: str, content_type: str | None):
    kwargs = {} if content_type is None else {"content_type": content_type}
    body = _assert_json_error(client.post(path, data=json.dumps(RIDE), **kwargs), 415)
    assert "application/json" in body["error"]


@pytest.mark.parametrize(("ride", "field"), BAD_RIDES)
def test_invalid_rides_are_422_naming_the_field(client: FlaskClient, ride: dict, field: str):
    _assert_json_error(_post(client, "/predict", ride), 422, field)


@pytest.mark.parametrize(("ride", "field"), BAD_RIDES)
def test_invalid_rides_in_a_batch_are_reported_by_index(client, ride: dict, field: str):
    body = _post(client, "/predict/batch", {"rides": [RIDE, ride]}).get_json()
    assert body["invalid"] == 1
    assert body["predictions"][1]["field"] == field
    assert body["predictions"][1]["duration"] is None


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
def test_non_finite_distances_are_422(client: FlaskClient, literal: bytes):
    data = b'{"PULocationID": 10, "DOLocationID": 50, "trip_distance": ' + literal + b"}"
    response = client.post("/predict", data=data, content_type="application/json")
    _assert_json_error(response, 422, "trip_distance")


def test_a_nan_ride_id_is_echoed_as_valid_json(client: FlaskClient):
    ride = b'{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1, "ride_id": NaN}'
    data = b'{"rides": [' + ride + b"]}"
    response = client.post("/predict/batch", data=data, content_type="application/json")
    assert response.status_code == 200
    assert b"NaN" not in response.get_data()
    assert json.loads(response.get_data())["predictions"][0]["ride_id"] is None


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_body_over_the_limit_is_413(client, path: str, web_settings: WebSettings):
    data = b'{"pad": "' + b"x" * web_settings.max_body_bytes + b'"}'
    _assert_json_error(client.post(path, data=data, content_type="application/json"), 413)


def test_unknown_routes_are_json_404(client: FlaskClient):
    body = _assert_json_error(client.get("/predict/nothing"), 404)
    assert "/predict/nothing" in body["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/predict"), ("PUT", "/predict"), ("DELETE", "/predict/batch"), ("POST", "/health")],
)
def test_wrong_methods_are_json_405_with_allow(client: FlaskClient, method: str, path: str):
    response = client.open(path, method=method)
    _assert_json_error(response, 405)
    assert response.headers["Allow"]
