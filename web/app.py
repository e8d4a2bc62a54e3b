"""The Flask application factory: the course's ``/predict`` contract, done properly.

The app only turns HTTP into calls on the shared :class:`ModelService` and back; every
answer, errors included, is JSON (never an HTML page, never a traceback).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
)

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.scoring import ModelService
from deploy_modes.web.access import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    access_line,
    access_logger,
    request_id,
)
from deploy_modes.web.bridge import BODY_TIMEOUT_ENVIRON
from deploy_modes.web.fastpath import PredictFastPath
from deploy_modes.web.metrics import CONTENT_TYPE, WebMetrics
from deploy_modes.web.openapi import openapi_document
from deploy_modes.web.payload import (
    NO_RIDE_ID,
    ClientError,
    check_json_body,
    dump_json,
    parse_json_object,
    prediction,
)
from deploy_modes.web.settings import WebSettings
from deploy_modes.web.v2 import create_v2_blueprint

__all__ = [
    "ACCESS_LOGGER",
    "DOCS_PATH",
    "METRIC_METHODS",
    "OTHER_METHOD",
    "REQUEST_ID_HEADER",
    "create_app",
]

JSON_MIMETYPE = "application/json"
DOCS_PATH = "/docs"  # the interactive API page (Swagger UI) for /openapi.json
# A ride every model can score: the start-up check behind /ready.
_PROBE_RIDE = {"PULocationID": 1, "DOLocationID": 1, "trip_distance": 1.0}
_UNMATCHED = "<unmatched>"
# The method label's values: HTTP's registered methods in common use, and one for the rest.
METRIC_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
OTHER_METHOD = "other"
_STARTED = "deploy_web.started"
_ID = "deploy_web.request_id"

_log = logging.getLogger(__name__)
_access = access_logger()


def create_app(service: ModelService, settings: WebSettings) -> Flask:
    """Return the prediction app serving ``service`` with ``settings``' limits."""
    app = Flask(__name__)
    app.debug = False  # never: the debugger would execute code sent by any client
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, PROPAGATE_EXCEPTIONS=False)
    metrics = WebMetrics(service.name, service.version)
    ready = _probe(service)
    service.unknown_listeners.append(metrics.unknown_rides.inc)  # after the probe: users' rides
    version = service.version
    openapi = dump_json(
        openapi_document(settings.max_batch_rides, settings.max_body_bytes, service.version)
    )
    manifest = dump_json(service.model.manifest)
    # The wiring, for extensions and debugging; the routes below close over it directly.
    app.extensions["deploy_web"] = {
        "service": service,
        "settings": settings,
        "metrics": metrics,
        "unready": ready,  # why the probe ride failed (None: ready); a reload refuses on it
    }

    @app.before_request
    def _start() -> None:
        environ = request.environ
        environ[_STARTED] = time.perf_counter()
        environ[_ID] = request_id(environ)
        if environ.get(BODY_TIMEOUT_ENVIRON):
            raise _body_timed_out()

    @app.after_request
    def _finish(response: Response) -> Response:
        environ = request.environ
        started = environ.get(_STARTED)
        seconds = time.perf_counter() - started if started is not None else 0.0
        rid = environ.get(_ID) or request_id(environ)
        response.headers[REQUEST_ID_HEADER] = rid
        status = response.status_code
        metrics.observe(_endpoint_label(app), _method_label(request.method), status, seconds)
        if settings.access_log:
            line = access_line(
                request.method, request.path, status, seconds, rid, request.remote_addr
            )
            _access.info(line)
        return response

    @app.post("/predict")
    def predict() -> Response:
        ride = _body()
        try:
            duration = service.predict_one(ride)
        except RideValidationError as exc:
            metrics.invalid_rides.labels("/predict", exc.field or "body").inc()
            return _json(exc.to_dict(), 422)
        metrics.predictions.labels("/predict").inc()
        return _json(prediction(duration, version, ride.get("ride_id", NO_RIDE_ID)))

    @app.post("/predict/batch")
    def predict_batch() -> Response:
        rides = _body().get("rides")
        if not isinstance(rides, list):
            raise ClientError(422, "rides must be a JSON array of ride objects", "rides")
        if len(rides) > settings.max_batch_rides:
            raise ClientError(
                413,
                f"at most {settings.max_batch_rides} rides per batch, got {len(rides)}",
                "rides",
            )
        items: list[dict[str, Any]] = []
        invalid = 0
        for outcome in service.predict_many(rides):
            item: dict[str, Any] = {"index": outcome.index, "duration": outcome.duration}
            ride = rides[outcome.index]
            if isinstance(ride, Mapping) and "ride_id" in ride:
                item["ride_id"] = ride["ride_id"]
            if outcome.error is not None:
                invalid += 1
                item.update(outcome.error.to_dict())
                metrics.invalid_rides.labels("/predict/batch", outcome.error.field or "ride").inc()
            items.append(item)
        metrics.predictions.labels("/predict/batch").inc(len(items) - invalid)
        return _json({"predictions": items, "model_version": version, "invalid": invalid})

    @app.get("/health")
    def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    def ready_check() -> Response:
        if ready is not None:
            why = f"the model failed its start-up check: {ready}"
            return _json({"error": why, "field": None}, 503)
        return _json({"status": "ready", "model_name": service.name, "model_version": version})

    @app.get("/model")
    def model() -> Response:
        return Response(manifest, mimetype=JSON_MIMETYPE)

    @app.get("/metrics")
    def metrics_text() -> Response:
        return Response(metrics.render(), content_type=CONTENT_TYPE)

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return Response(openapi, mimetype=JSON_MIMETYPE)

    default_options = app.make_default_options_response

    def options_response() -> Response:
        # Flask's automatic OPTIONS answer is an empty text/html 200: say "no content" instead.
        response = default_options()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response

    app.make_default_options_response = options_response  # type: ignore[method-assign]
    app.register_blueprint(create_v2_blueprint(service, metrics, _json_body_bytes, lambda: ready))

    @app.get(DOCS_PATH)
    def docs_redirect() -> Response:
        # werkzeug's own slash redirect carries an HTML body: this one has none.
        response = Response(status=308, headers={"Location": f"{DOCS_PATH}/"})
        del response.headers["Content-Type"]
        return response

    # Swagger UI's pinned assets (flask-swagger-ui's copy), served here: no CDN, no internet.
    app.register_blueprint(
        get_swaggerui_blueprint(DOCS_PATH, "/openapi.json", {"app_name": "Ride duration API"})
    )

    @app.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> Response:
        return _json(exc.to_dict(), exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Keep werkzeug's status and headers (Allow on 405) but answer JSON, not HTML.
        response = exc.get_response()
        response.set_data(dump_json({"error": _http_message(exc), "field": None}))
        response.mimetype = JSON_MIMETYPE
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _log.exception("unexpected error answering %s %s", request.method, request.path)
        return _json({"error": "internal error: the server logged the details", "field": None}, 500)

    # The common, valid /predict skips Flask's per-request machinery; everything else is above.
    app.wsgi_app = PredictFastPath(  # type: ignore[method-assign]
        app.wsgi_app, service, metrics, settings.max_body_bytes, settings.access_log
    )
    return app


def _method_label(method: str) -> str:
    """Return the method's metric label: a client's made-up method must not add a series."""
    return method if method in METRIC_METHODS else OTHER_METHOD


def _endpoint_label(app: Flask) -> str:
    """Return the matched route, the route a 405 was refused on, or ``<unmatched>``."""
    rule = request.url_rule
    if rule is not None:
        return rule.rule
    refused = request.routing_exception
    if isinstance(refused, MethodNotAllowed) and refused.valid_methods:
        # The path matched a route, only not for this method: match it again with one it allows.
        adapter = app.create_url_adapter(request)
        if adapter is not None:
            try:
                matched, _ = adapter.match(method=refused.valid_methods[0], return_rule=True)
            except HTTPException:  # e.g. a redirect: no one route to name
                return _UNMATCHED
            return matched.rule
    return _UNMATCHED


def _body() -> dict[str, Any]:
    """Return the request's JSON object, or raise the ClientError that explains why not."""
    return parse_json_object(request.mimetype, _body_bytes())


def _body_bytes() -> bytes:
    """Return the request body within the size limit, or raise 413."""
    limit = request.max_content_length
    if request.content_length is None and limit is not None:
        # A chunked upload: werkzeug would silently cut it at the limit (and the truncated
        # JSON would look malformed), so read one byte past the limit to tell "too large".
        try:
            data = request.environ["wsgi.input"].read(limit + 1)
        except TimeoutError:  # the worker's socket deadline: the body stalled
            raise _body_timed_out() from None
        if len(data) > limit:
            raise RequestEntityTooLarge()
    else:
        try:
            data = request.get_data(cache=False)
        except TimeoutError:  # the worker's socket deadline: the body stalled
            raise _body_timed_out() from None
        except ClientDisconnected as exc:
            # werkzeug's stream turns any read error into this 400, the deadline included:
            # a stalled body (the error's context) is still a 408.
            if isinstance(exc.__context__, TimeoutError):
                raise _body_timed_out() from None
            raise
    return data


def _body_timed_out() -> ClientError:
    """Return the 408 of a body that stalled, logging it (the access line follows)."""
    seconds = current_app.extensions["deploy_web"]["settings"].body_timeout
    _log.warning(
        "request body timeout: %s %s from %s sent no complete body within %g s",
        request.method,
        request.path,
        request.remote_addr,
        seconds,
    )
    return ClientError(408, f"the request body did not arrive within {seconds:g} seconds")


def _json_body_bytes() -> bytes:
    """Return a non-empty JSON body's bytes (checked as ``_body`` does), unparsed."""
    # V2 clients (tritonclient) send no Content-Type at all: JSON is the protocol's default.
    mimetype = request.mimetype or JSON_MIMETYPE
    check_json_body(mimetype, b"{}")  # the content type, before reading anything
    data = _body_bytes()
    check_json_body(mimetype, data)
    return data


def _probe(service: ModelService) -> str | None:
    """Return why the model cannot predict, or None when it can."""
    try:
        value = service.predict_one(_PROBE_RIDE)
    except Exception as exc:  # any failure means "not ready", with the reason shown
        return f"{type(exc).__name__}: {exc}"
    return None if math.isfinite(value) else f"it predicted {value} for a plain ride"


def _http_message(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"no such endpoint: {request.path}"
    if exc.code == 405:
        return f"method {request.method} is not allowed on {request.path}"
    if exc.code == 413:
        limit = request.max_content_length
        return f"the request body is larger than {limit} bytes" if limit else "body too large"
    return str(exc.description or exc.name)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dump_json(body), status=status, mimetype=JSON_MIMETYPE)
