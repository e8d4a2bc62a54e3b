"""The OpenAPI document of the web service: the paths here, the schemas from ``core.schema``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from deploy_modes.core.schema import (
    BatchAnswer,
    BatchRequest,
    Error,
    Prediction,
    Ready,
    Ride,
    RideRequest,
    Status,
)
from deploy_modes.web.v2 import InferRequest, InferResponse, ModelMetadata, V2Error

__all__ = ["OPENAPI_VERSION", "openapi_document"]

# 3.1: its schemas are JSON Schema 2020-12, what pydantic's model_json_schema() writes.
OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_REQUESTS: tuple[type[BaseModel], ...] = (Ride, RideRequest, BatchRequest, InferRequest)
_ANSWERS: tuple[type[BaseModel], ...] = (
    Error,
    Prediction,
    BatchAnswer,
    Status,
    Ready,
    InferResponse,
    ModelMetadata,
    V2Error,
)


def _components() -> dict[str, Any]:
    _, schema = models_json_schema(
        [(model, "validation") for model in _REQUESTS]
        + [(model, "serialization") for model in _ANSWERS],
        ref_template=_REF,
    )
    return schema["$defs"]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(Error), description)


def _get(summary: str, operation: str, ok: dict, errors: dict | None = None) -> dict[str, Any]:
    responses = {"200": ok, **(errors or {}), **_COMMON}
    return {"get": {"summary": summary, "operationId": operation, "responses": responses}}


def _post(summary: str, operation: str, body: dict, ok: dict, errors: dict) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok, **_BAD_BODY, **errors, **_COMMON},
        }
    }


_BAD_BODY = {
    "400": _error("Invalid JSON, empty body, or not a JSON object."),
    "413": _error("The body is larger than the configured maximum."),
    "415": _error("The Content-Type is not application/json."),
}
_COMMON = {
    "405": _error("Method not allowed on this path."),
    "500": _error("Unexpected server error (a bug: please report it)."),
}


def openapi_document(max_batch_rides: int, max_body_bytes: int, model_version: str) -> dict:
    """Return the OpenAPI document for a service with these limits."""
    components = _components()
    batch = {**components["BatchRequest"]}  # inline, with this service's own ride limit
    batch["properties"] = {"rides": {**batch["properties"]["rides"], "maxItems": max_batch_rides}}
    any_json = {"type": "object"}
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Ride duration prediction",
            "version": model_version,
            "description": (
                "Predicts NYC taxi ride durations (minutes). Every error is a JSON object "
                f"`{{error, field}}`. Bodies are limited to {max_body_bytes} bytes."
            ),
        },
        "paths": {
            "/predict": _post(
                "Predict one ride's duration (the course's contract).",
                "predict",
                _ref(RideRequest),
                _json(_ref(Prediction), "OK"),
                {"422": _error("A field is missing, of the wrong type or out of range.")},
            ),
            "/predict/batch": _post(
                "Predict many rides; an invalid ride is reported by index.",
                "predictBatch",
                batch,
                _json(_ref(BatchAnswer), "OK"),
                {
                    "413": _error(
                        f"The body is too large, or holds more than {max_batch_rides} rides."
                    ),
                    "422": _error("`rides` is missing or not an array."),
                },
            ),
            "/health": _get("Liveness: the process answers.", "health", _json(_ref(Status), "OK")),
            "/ready": _get(
                "Readiness: the model is loaded and predicts.",
                "ready",
                _json(_ref(Ready), "OK"),
                {"503": _error("The model failed its start-up check.")},
            ),
            "/model": _get("The served model's manifest.", "model", _json(any_json, "OK")),
            "/metrics": _get("Prometheus metrics (text exposition format).", "metrics", text),
            "/openapi.json": _get("This document.", "openapi", _json(any_json, "OK")),
            "/docs": {
                "get": {
                    "summary": "Redirects to /docs/.",
                    "operationId": "docsRedirect",
                    "responses": {"308": {"description": "Location: /docs/"}, **_COMMON},
                }
            },
            "/docs/": {
                "get": {
                    "summary": "This document as an interactive page (Swagger UI).",
                    "operationId": "docs",
                    "responses": {"200": _html("The page."), **_COMMON},
                }
            },
            "/docs/{path}": {
                "get": {
                    "summary": "The page's assets (Swagger UI's scripts, styles, icons).",
                    "operationId": "docsAsset",
                    "parameters": [
                        {
                            "name": "path",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "The asset."}, **_COMMON},
                }
            },
            **_v2_paths(any_json),
        },
        "components": {
            "schemas": components,
            "responses": {"NotFound": _error("No such path.")},
        },
    }


_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}


def _v2_error(description: str) -> dict[str, Any]:
    return _json(_ref(V2Error), description)


def _v2_paths(any_json: dict[str, Any]) -> dict[str, Any]:
    """Return the Open Inference Protocol (V2) paths; errors there are ``{error}`` only."""
    unknown = {"404": _v2_error("No model (or version) of that name.")}
    live = _get("V2 server liveness.", "v2Live", _json(any_json, "OK"))
    ready = _get("V2 server readiness.", "v2Ready", _json(any_json, "OK"))
    metadata = _get(
        "V2 model metadata: the input tensors and the output.",
        "v2ModelMetadata",
        _json(_ref(ModelMetadata), "OK"),
        unknown,
    )
    model_ready = _get("V2 model readiness.", "v2ModelReady", _json(any_json, "OK"), unknown)
    infer = {
        "post": {
            "summary": "V2 inference: PULocationID, DOLocationID (INT64), trip_distance (FP64), "
            "shape [n], give duration (FP64, [n]). One invalid row refuses the request.",
            "operationId": "v2Infer",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(InferRequest)}},
            },
            "responses": {
                "200": _json(_ref(InferResponse), "OK"),
                "400": _v2_error("Invalid JSON, tensors or a row (the error names it)."),
                **unknown,
                "413": _v2_error("The body is larger than the configured maximum."),
                "415": _v2_error("A Content-Type other than application/json."),
            },
        }
    }
    paths = {"/v2/health/live": live, "/v2/health/ready": ready}
    for suffix, operation in (("", metadata), ("/ready", model_ready), ("/infer", infer)):
        method, body = next(iter(operation.items()))
        paths[f"/v2/models/{{model}}{suffix}"] = {method: {**body, "parameters": [_MODEL]}}
        versioned = {**body, "operationId": body["operationId"] + "Version"}
        versioned["parameters"] = [_MODEL, _VERSION]
        paths[f"/v2/models/{{model}}/versions/{{model_version}}{suffix}"] = {method: versioned}
    return paths
