"""The classroom page and its JSON API (Flask): state, rate, scenarios."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, jsonify, request, send_from_directory
from pydantic import BaseModel, Field, ValidationError

from deploy_modes.classroom.report import draw_chart, markdown
from deploy_modes.classroom.settings import MAX_RATE
from deploy_modes.classroom.state import RoomState, ScenarioState
from deploy_modes.core.errors import DeployError

__all__ = ["STATIC", "Classroom", "create_app"]

STATIC = Path(__file__).parent / "static"  # installed with the package: no CDN, no network


class Classroom(Protocol):
    """What the app needs of the room (a test may pass any object with these)."""

    def state(self) -> RoomState: ...
    def set_rate(self, rate: float) -> float: ...
    def run_scenario(self, name: str) -> ScenarioState: ...


class RateRequest(BaseModel):
    """``POST /api/rate``: the new base rate."""

    rate: float = Field(gt=0, le=MAX_RATE)


_MAX_BODY_BYTES = 1024


def _error(status: int, message: str) -> tuple[Any, int]:
    return jsonify({"error": message}), status


def create_app(room: Classroom) -> Flask:
    """Build the app serving ``room``."""
    from deploy_modes.classroom.room import ScenarioBusy, UnknownScenario

    app = Flask(__name__, static_folder=None)
    # The API's bodies are a few bytes ({"rate": 20}); anything bigger is refused unread.
    app.config.update(MAX_CONTENT_LENGTH=_MAX_BODY_BYTES)

    @app.get("/")
    def index() -> Any:
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Any:
        return send_from_directory(STATIC, name)

    @app.get("/api/state")
    def state() -> Any:
        return app.response_class(room.state().model_dump_json(), mimetype="application/json")

    @app.post("/api/rate")
    def rate() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, 'send a JSON object: {"rate": 20}')
        try:
            wanted = RateRequest.model_validate(body)
        except ValidationError as exc:
            problem = exc.errors()[0]
            return _error(400, f"rate: {problem['msg']}")
        return jsonify({"rate": room.set_rate(wanted.rate)})

    @app.post("/api/scenario/<name>")
    def scenario(name: str) -> Any:
        try:
            started = room.run_scenario(name)
        except UnknownScenario as exc:
            return _error(404, str(exc))
        except ScenarioBusy as exc:
            return _error(409, str(exc))
        except DeployError as exc:
            return _error(400, str(exc))
        return app.response_class(
            started.model_dump_json(), status=202, mimetype="application/json"
        )

    @app.get("/api/report.md")
    def report_markdown() -> Any:
        text = markdown(room.state(), "report.png")
        return app.response_class(text, mimetype="text/markdown")

    @app.get("/api/report.png")
    def report_chart() -> Any:
        image = io.BytesIO()
        draw_chart(room.state().lanes, image)
        return app.response_class(image.getvalue(), mimetype="image/png")

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Any:
        return _error(404, f"no such page: {request.path}")

    @app.errorhandler(413)
    def too_large(_exc: Exception) -> Any:
        return _error(413, f'the body is over {_MAX_BODY_BYTES} bytes; send {{"rate": 20}}')

    @app.errorhandler(405)
    def wrong_method(_exc: Exception) -> Any:
        return _error(405, f"{request.method} is not allowed on {request.path}")

    @app.errorhandler(500)
    def broken(_exc: Exception) -> Any:  # a bug of ours: the page shows it, the room goes on
        return _error(500, f"the classroom failed to answer {request.path}; see its terminal")

    return app
