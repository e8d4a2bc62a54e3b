"""Property-based: generated bodies, headers and paths never get a 5xx or a non-JSON answer."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Any JSON value, NaN and infinities included (Python's json writes and reads them).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
FIELD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.lists(st.integers(), max_size=2)
)
# Rides that look almost right: the real fields, each with any value, sometimes missing.
RIDES = st.fixed_dictionaries(
    {},
    optional={
        "PULocationID": FIELD_VALUES,
        "DOLocationID": FIELD_VALUES,
        "trip_distance": FIELD_VALUES,
        "ride_id": JSON_VALUES,
    },
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    RIDES.map(lambda v: json.dumps(v).encode()),
    st.lists(RIDES | JSON_VALUES, max_size=8).map(lambda r: json.dumps({"rides": r}).encode()),
    st.binary(max_size=200),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "application/xml"]
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _assert_clean(response) -> dict:
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = json.loads(response.get_data())  # strict JSON: no NaN slipped out
    if response.status_code >= 400:
        assert set(body) == {"error", "field"}
    return body


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_generated_bodies_never_get_a_5xx(client: FlaskClient, path, body, content_type):
    response = client.post(path, data=body, content_type=content_type)
    _assert_clean(response)


@FUZZ
@given(ride=RIDES)
def test_a_ride_gets_the_same_answer_alone_and_in_a_batch(client: FlaskClient, ride: dict):
    single = client.post("/predict", data=json.dumps(ride), content_type="application/json")
    batch = client.post(
        "/predict/batch", data=json.dumps({"rides": [ride]}), content_type="application/json"
    )
    one = _assert_clean(single)
    (item,) = _assert_clean(batch)["predictions"]
    if single.status_code == 200:
        assert item["duration"] == one["duration"]
        assert "error" not in item
    else:
        assert single.status_code == 422
        assert item["duration"] is None
        assert (item["error"], item["field"]) == (one["error"], one["field"])


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    path=st.text(alphabet=st.characters(codec="ascii", exclude_characters="?#"), max_size=30),
)
def test_generated_paths_and_methods_never_get_a_5xx(client: FlaskClient, method, path):
    response = client.open("/" + path.lstrip("/"), method=method)
    assert response.status_code < 500
    if response.status_code >= 400 and method != "HEAD":
        assert set(response.get_json()) == {"error", "field"}
