"""Every answer the app gives is an instance of the schema its /openapi.json publishes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import BaseModel, ValidationError

from deploy_modes.core.schema import (
    BatchAnswer,
    BatchItem,
    Error,
    Prediction,
    Ready,
    Ride,
    Status,
)

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40, "ride_id": "r-1"}


def _strict(model: type[BaseModel], body: Any) -> BaseModel:
    """Validate an answer strictly and refuse keys the model does not name."""
    extra = set(body) - {field.alias or name for name, field in model.model_fields.items()}
    assert not extra, f"{model.__name__} does not document {extra}"
    return model.model_validate(body, strict=True)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "model"),
    [
        ("post", "/predict", RIDE, 200, Prediction),
        ("post", "/predict", {**RIDE, "PULocationID": 0}, 422, Error),
        ("post", "/predict/batch", {"rides": [RIDE, {}, 3]}, 200, BatchAnswer),
        ("post", "/predict/batch", {"rides": 3}, 422, Error),
        ("get", "/health", None, 200, Status),
        ("get", "/ready", None, 200, Ready),
        ("get", "/nowhere", None, 404, Error),
        ("delete", "/predict", None, 405, Error),
    ],
)
def test_answers_are_the_published_models(
    client: FlaskClient, method: str, path: str, body: Any, status: int, model: type[BaseModel]
) -> None:
    response = getattr(client, method)(path, json=body)
    assert response.status_code == status
    answer = response.get_json()
    _strict(model, answer)
    if isinstance(answer.get("predictions"), list):
        for item in answer["predictions"]:
            _strict(BatchItem, item)


def test_an_answer_missing_a_field_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError):
        Prediction.model_validate({"duration": 1.0})  # the test above can fail


def test_openapi_components_are_the_models(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Ride"] == Ride.model_json_schema()
    for model in (Error, Status):
        assert schemas[model.__name__] == model.model_json_schema(mode="serialization")
