"""The Open Inference Protocol (V2): the app's answers, then a real V2 client against gunicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
from flask.testing import FlaskClient

from deploy_modes.core.scoring import ModelService

if TYPE_CHECKING:  # tests/web/conftest.py; "conftest" is only unique during collection
    from conftest import WebServer

RIDES = {
    "PULocationID": [10, 43, 265, 1],
    "DOLocationID": [50, 236, 1, 1],
    "trip_distance": [40.0, 2.5, 0.0, 1],
}


def _tensors(columns: dict[str, list], types: dict[str, str] | None = None) -> list[dict]:
    types = types or {}
    return [
        {
            "name": name,
            "shape": [len(data)],
            "datatype": types.get(name, "FP64" if name == "trip_distance" else "INT64"),
            "data": data,
        }
        for name, data in columns.items()
    ]


def _infer(client: FlaskClient, name: str, body: dict) -> tuple[int, dict]:
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


def test_v2_health_and_metadata(client: FlaskClient, model_service: ModelService):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    name, version = model_service.name, model_service.version
    meta = client.get(f"/v2/models/{name}").get_json()
    assert meta["name"] == name and meta["versions"] == [version]
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [
        ("PULocationID", "INT64"),
        ("DOLocationID", "INT64"),
        ("trip_distance", "FP64"),
    ]
    assert meta["outputs"] == [{"name": "duration", "datatype": "FP64", "shape": [-1]}]
    assert client.get(f"/v2/models/{name}/ready").get_json() == {"name": name, "ready": True}
    assert client.get(f"/v2/models/{name}/versions/{version}/ready").status_code == 200
    missing = client.get("/v2/models/nope/ready")
    assert missing.status_code == 404
    assert set(missing.get_json()) == {"error"} and "nope" in missing.get_json()["error"]
    assert client.get(f"/v2/models/{name}/versions/0/ready").status_code == 404


def test_v2_infer_equals_predict(client: FlaskClient, model_service: ModelService):
    status, body = _infer(client, model_service.name, {"id": "r1", "inputs": _tensors(RIDES)})
    assert status == 200, body
    assert body["model_name"] == model_service.name
    assert body["model_version"] == model_service.version
    assert body["id"] == "r1"
    (output,) = body["outputs"]
    assert output["name"] == "duration" and output["datatype"] == "FP64"
    assert output["shape"] == [4]
    for row, duration in enumerate(output["data"]):
        ride = {field: RIDES[field][row] for field in RIDES}
        assert client.post("/predict", json=ride).get_json()["duration"] == duration


@pytest.mark.parametrize(
    ("columns", "types", "message"),
    [
        ({**RIDES, "PULocationID": [10, 43, 266, 1]}, None, "row 2: PULocationID must be between"),
        ({**RIDES, "trip_distance": [1.0, -1.0, 0, 1]}, None, "row 1: trip_distance must not be"),
        ({**RIDES, "DOLocationID": [1, 2, 3.5, 4]}, None, "row 2: DOLocationID must be a INT64"),
        ({**RIDES, "DOLocationID": [1, True, 3, 4]}, None, "row 1: DOLocationID must be a INT64"),
        (
            {**RIDES, "trip_distance": [1.0, None, 0, 1]},
            None,
            "row 1: trip_distance must be a FP64",
        ),
        ({**RIDES, "DOLocationID": [1, 2]}, None, "differ in length"),
        (RIDES, {"PULocationID": "BYTES"}, "input 'PULocationID' has datatype 'BYTES'"),
        (
            {k: v for k, v in RIDES.items() if k != "trip_distance"},
            None,
            "missing input tensor 'trip_distance'",
        ),
        ({**RIDES, "fare": [1, 2, 3, 4]}, None, "unknown input 'fare'"),
    ],
)
def test_v2_infer_refuses_the_whole_request_naming_the_row(
    client: FlaskClient, model_service: ModelService, columns, types, message
):
    status, body = _infer(client, model_service.name, {"inputs": _tensors(columns, types)})
    assert status == 400
    assert set(body) == {"error"}
    assert message in body["error"]


def test_v2_infer_bad_bodies(client: FlaskClient, model_service: ModelService):
    url = f"/v2/models/{model_service.name}/infer"
    bad_json = client.post(url, data=b"{", content_type="application/json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.get_json()["error"]
    no_inputs = client.post(url, json={"id": "x"})
    assert no_inputs.status_code == 400 and no_inputs.get_json()["error"].startswith("inputs")
    wrong_output = client.post(url, json={"inputs": _tensors(RIDES), "outputs": [{"name": "x"}]})
    assert wrong_output.status_code == 400 and "'x'" in wrong_output.get_json()["error"]
    binary = client.post(
        url, json={"inputs": []}, headers={"Inference-Header-Content-Length": "10"}
    )
    assert binary.status_code == 400 and "binary" in binary.get_json()["error"]
    text = client.post(url, data=b"{}", content_type="text/plain")
    assert text.status_code == 415 and set(text.get_json()) == {"error"}
    unknown = _infer(client, "other-model", {"inputs": _tensors(RIDES)})
    assert unknown[0] == 404


def test_v2_is_in_openapi(client: FlaskClient):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "post" in paths["/v2/models/{model}/infer"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/{model}"):
        assert "get" in paths[path]
    assert "get" in paths["/v2/models/{model}/ready"]


@pytest.mark.integration
def test_a_triton_client_gets_predict_s_answers(web_server: WebServer, model_service: ModelService):
    # tritonclient's HTTP client (a real V2 client from PyPI) against the real gunicorn server.
    import tritonclient.http as triton

    host = web_server.url.removeprefix("http://")
    client = triton.InferenceServerClient(url=host, network_timeout=30)
    try:
        assert client.is_server_live() and client.is_server_ready()
        name = model_service.name
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert meta["versions"] == [model_service.version]
        rng = np.random.default_rng(15)
        n = 200
        columns = {
            "PULocationID": rng.integers(1, 266, n, dtype=np.int64),
            "DOLocationID": rng.integers(1, 266, n, dtype=np.int64),
            "trip_distance": rng.uniform(0, 60, n).astype(np.float64),
        }
        inputs = []
        for field, values in columns.items():
            tensor = triton.InferInput(field, [n], "FP64" if values.dtype.kind == "f" else "INT64")
            tensor.set_data_from_numpy(values, binary_data=False)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput("duration", binary_data=False)]
        result = client.infer(name, inputs, outputs=outputs, request_id="batch-1")
        durations = result.as_numpy("duration")
        assert durations.dtype == np.float64 and durations.shape == (n,)
        assert result.get_response()["model_version"] == model_service.version
        for row in range(0, n, 20):
            ride = {field: values[row].item() for field, values in columns.items()}
            answer = requests.post(f"{web_server.url}/predict", json=ride, timeout=10).json()
            assert answer["duration"] == durations[row]
        with pytest.raises(triton.InferenceServerException, match="row 0: PULocationID"):
            bad = triton.InferInput("PULocationID", [1], "INT64")
            bad.set_data_from_numpy(np.array([999], dtype=np.int64), binary_data=False)
            rest = [
                triton.InferInput(f, [1], t)
                for f, t in (("DOLocationID", "INT64"), ("trip_distance", "FP64"))
            ]
            rest[0].set_data_from_numpy(np.array([1], dtype=np.int64), binary_data=False)
            rest[1].set_data_from_numpy(np.array([1.0]), binary_data=False)
            client.infer(name, [bad, *rest], outputs=outputs)
    finally:
        client.close()
