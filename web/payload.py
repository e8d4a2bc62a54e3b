"""Turn a request body into a JSON object, or a client error that says what was wrong."""

from __future__ import annotations

import json
import math
from typing import Any

from deploy_modes.core.schema import json_type

__all__ = [
    "JSON_MIMETYPES",
    "NO_RIDE_ID",
    "ClientError",
    "check_json_body",
    "dump_json",
    "parse_json_object",
    "prediction",
]

JSON_MIMETYPES = frozenset({"application/json"})
NO_RIDE_ID: Any = object()  # the request had no ride_id (null is a ride_id, echoed as null)


class ClientError(Exception):
    """A request the client must fix: an HTTP status, a message and the offending field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        """Return the JSON error body every endpoint uses."""
        return {"error": self.message, "field": self.field}


def check_json_body(mimetype: str, body: bytes) -> None:
    """Raise ClientError unless the body is declared JSON (415) and is not empty (400)."""
    if mimetype not in JSON_MIMETYPES and not mimetype.endswith("+json"):
        shown = mimetype or "none"
        raise ClientError(415, f"Content-Type must be application/json, got {shown}")
    if not body.strip():
        raise ClientError(400, "the request body is empty: send a JSON object")


def parse_json_object(mimetype: str, body: bytes) -> dict[str, Any]:
    """Return the body as a JSON object; raise ClientError (415 or 400) otherwise."""
    check_json_body(mimetype, body)
    try:
        value = json.loads(body)
    except UnicodeDecodeError:
        raise ClientError(400, "the request body is not UTF-8 encoded JSON") from None
    except json.JSONDecodeError as exc:
        message = f"the request body is not valid JSON: {exc.msg} at character {exc.pos}"
        raise ClientError(400, message) from None
    except ValueError:  # e.g. an integer literal longer than Python's digit limit
        raise ClientError(400, "the request body holds a number too long to parse") from None
    except RecursionError:
        raise ClientError(400, "the request body nests JSON too deeply") from None
    if not isinstance(value, dict):
        raise ClientError(400, f"the request body must be a JSON object, got {json_type(value)}")
    return value


def prediction(duration: float, version: str, ride_id: Any = NO_RIDE_ID) -> dict[str, Any]:
    """Return the ``/predict`` answer: the course's ``duration``, the version, the echoed id."""
    answer: dict[str, Any] = {"duration": duration, "model_version": version}
    if ride_id is not NO_RIDE_ID:
        answer["ride_id"] = ride_id
    return answer


def dump_json(body: Any) -> str:
    """Return ``body`` as strict JSON: a non-finite float (say an echoed ride_id) becomes null."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(body), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
