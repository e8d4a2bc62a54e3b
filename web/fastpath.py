"""The hot path: a well-formed ``POST /predict`` answered without Flask's per-request machinery.

Flask spends about 100 us per request on contexts, routing, hooks and response objects, several
times the prediction itself. This WSGI middleware (installed on ``app.wsgi_app``, as ProxyFix
is) answers only the common case: ``POST /predict`` with a JSON content type, a declared length
within the limit, a body that parses to a JSON object and a ride that validates. Anything else,
every error included, goes to the Flask app, so each error has one implementation. The answer,
headers, metrics and access line are the ones the Flask route would give (tests compare both).

It parses and validates in one call, ``RideRequest.model_validate_json`` (pydantic's own JSON
parser), about 3x cheaper than ``json.loads`` and validating the dict (benchmarks/core/
bench_validation.py). Where that parser and ``json.loads`` differ it refuses (a BOM, a lone
surrogate), and the Flask route, which uses ``json.loads``, answers; the one input it would take
that ``json.loads`` refuses, an integer of more than 4,300 digits, cannot fit in the bodies it
is given (tests/web/test_web_fastpath.py compares both on generated bodies).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from deploy_modes.core.schema import RideRequest
from deploy_modes.core.scoring import ModelService
from deploy_modes.web.access import REQUEST_ID_HEADER, access_line, access_logger, request_id
from deploy_modes.web.bridge import BODY_TIMEOUT_ENVIRON
from deploy_modes.web.metrics import WebMetrics
from deploy_modes.web.payload import NO_RIDE_ID, dump_json, prediction

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["PREDICT_PATH", "PredictFastPath"]

PREDICT_PATH = "/predict"
_JSON = "application/json"
_STATUS_OK = "200 OK"
# json.loads refuses integers of more than 4,300 digits (sys.get_int_max_str_digits), pydantic's
# parser does not: a body this short cannot hold one, so both parsers see the same values.
_MAX_FAST_BODY_BYTES = 4096


class PredictFastPath:
    """WSGI middleware answering valid ``POST /predict`` requests itself; the rest go to ``app``."""

    def __init__(
        self,
        app: WSGIApplication,
        service: ModelService,
        metrics: WebMetrics,
        max_body_bytes: int,
        access_log: bool,
    ) -> None:
        self.app = app
        self._predict: Callable[[RideRequest], float] = service.predict_ride
        self._version = service.version
        self._metrics = metrics
        self._served = metrics.predictions.labels(PREDICT_PATH)
        self._limit = min(max_body_bytes, _MAX_FAST_BODY_BYTES)
        self._log: logging.Logger | None = access_logger() if access_log else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PREDICT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        started = time.perf_counter()
        length = _declared_length(environ.get("CONTENT_LENGTH"))
        if length is None or length > self._limit or not _is_json(environ.get("CONTENT_TYPE")):
            return self.app(environ, start_response)  # chunked, large or not JSON: Flask says
        try:
            data = environ["wsgi.input"].read(length)
        except TimeoutError:  # the body stalled (the worker's socket deadline): Flask says 408
            environ[BODY_TIMEOUT_ENVIRON] = True
            environ["wsgi.input"] = io.BytesIO()
            return self.app(environ, start_response)
        # A body shorter than declared (the client went away) is Flask's 400 to give.
        answer = self._answer(data) if len(data) == length else None
        if answer is None:  # not the common case: the Flask route answers it, once
            environ["wsgi.input"] = io.BytesIO(data)  # the body, as read, for Flask to read again
            return self.app(environ, start_response)
        body = dump_json(answer).encode()
        rid = request_id(environ)
        start_response(
            _STATUS_OK,
            [("Content-Type", _JSON), ("Content-Length", str(len(body))), (REQUEST_ID_HEADER, rid)],
        )
        self._served.inc()
        seconds = time.perf_counter() - started
        self._metrics.observe(PREDICT_PATH, "POST", 200, seconds)
        if self._log is not None:
            remote = environ.get("REMOTE_ADDR")
            self._log.info(access_line("POST", PREDICT_PATH, 200, seconds, rid, remote))
        return [body]

    def _answer(self, data: bytes) -> dict[str, Any] | None:
        """Return the answer to a valid ride, or None for anything the Flask route must judge."""
        try:
            ride = RideRequest.model_validate_json(data)
            ride_id = ride.ride_id if "ride_id" in ride.model_fields_set else NO_RIDE_ID
            return prediction(self._predict(ride), self._version, ride_id)
        except Exception:  # any refusal (or surprise) is the Flask route's to answer and log
            return None


def _declared_length(value: str | None) -> int | None:
    """Return a plain decimal Content-Length, or None (absent, chunked or odd: Flask decides)."""
    if not value or not value.isdigit() or not value.isascii():
        return None
    return int(value)


def _is_json(content_type: str | None) -> bool:
    """Say whether the content type is exactly ``application/json`` (parameters allowed)."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() == _JSON
