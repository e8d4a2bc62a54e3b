"""The OpenAPI 3 document of the web service: every endpoint, its schema and its errors."""

from __future__ import annotations

from typing import Any

from deploy_modes.core.validation import MAX_DISTANCE, MAX_ZONE, MIN_ZONE

__all__ = ["OPENAPI_VERSION", "openapi_document"]

OPENAPI_VERSION = "3.0.3"

_ZONE = {"type": "integer", "minimum": MIN_ZONE, "maximum": MAX_ZONE}
_RIDE = {
    "type": "object",
    "required": ["PULocationID", "DOLocationID", "trip_distance"],
    "properties": {
        "PULocationID": {**_ZONE, "description": "Pickup TLC taxi zone ID.", "example": 10},
        "DOLocationID": {**_ZONE, "description": "Dropoff TLC taxi zone ID.", "example": 50},
        "trip_distance": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_DISTANCE,
            "description": "Trip distance in miles (finite).",
            "example": 40,
        },
        "ride_id": {"description": "Any JSON value; echoed back in the answer."},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error", "field"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong, in one line."},
        "field": {"type": "string", "nullable": True, "description": "The offending field."},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
    ride_ref = {"$ref": "#/components/schemas/Ride"}
    prediction = {
        "type": "object",
        "required": ["duration", "model_version"],
        "properties": {
            "duration": {"type": "number", "description": "Predicted duration in minutes."},
            "model_version": {"type": "string"},
            "ride_id": {"description": "Echoed from the request when given."},
        },
    }
    batch_item = {
        "type": "object",
        "required": ["index", "duration"],
        "properties": {
            "index": {"type": "integer", "description": "Position of the ride in the request."},
            "duration": {"type": "number", "nullable": True},
            "ride_id": {"description": "Echoed from the request when given."},
            "error": {"type": "string", "description": "Why this ride was refused."},
            "field": {"type": "string", "nullable": True},
        },
    }
    batch_answer = {
        "type": "object",
        "required": ["predictions", "model_version", "invalid"],
        "properties": {
            "predictions": {"type": "array", "items": batch_item},
            "model_version": {"type": "string"},
            "invalid": {"type": "integer", "description": "How many rides were refused."},
        },
    }
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
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
            "/predict": {
                "post": {
                    "summary": "Predict one ride's duration (the course's contract).",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ride_ref}},
                    },
                    "responses": {
                        "200": _ok(prediction),
                        **_BAD_BODY,
                        "422": _error("A field is missing, of the wrong type or out of range."),
                        **_COMMON,
                    },
                }
            },
            "/predict/batch": {
                "post": {
                    "summary": "Predict many rides; an invalid ride is reported by index.",
                    "operationId": "predictBatch",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["rides"],
                                    "properties": {
                                        "rides": {
                                            "type": "array",
                                            "maxItems": max_batch_rides,
                                            "items": ride_ref,
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok(batch_answer),
                        **_BAD_BODY,
                        "413": _error(
                            f"The body is too large, or holds more than {max_batch_rides} rides."
                        ),
                        "422": _error("`rides` is missing or not an array."),
                        **_COMMON,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness: the process answers.",
                    "operationId": "health",
                    "responses": {"200": _ok(status), **_COMMON},
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness: the model is loaded and predicts.",
                    "operationId": "ready",
                    "responses": {
                        "200": _ok(status),
                        "503": _error("The model failed its start-up check."),
                        **_COMMON,
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The served model's manifest.",
                    "operationId": "model",
                    "responses": {"200": _ok({"type": "object"}), **_COMMON},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format).",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_COMMON,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "operationId": "openapi",
                    "responses": {"200": _ok({"type": "object"}), **_COMMON},
                }
            },
        },
        "components": {
            "schemas": {"Ride": _RIDE, "Error": _ERROR},
            "responses": {"NotFound": _error("No such path.")},
        },
    }
