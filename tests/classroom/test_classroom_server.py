"""The page's API refuses bad input with a JSON error: a room of plain objects stands behind it."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from deploy_modes.classroom.room import ScenarioBusy, UnknownScenario
from deploy_modes.classroom.server import STATIC, create_app
from deploy_modes.classroom.state import RoomState, ScenarioState


class _Room:
    """Records what the app asked; answers like the real room does."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.running = False

    def state(self) -> RoomState:
        return RoomState(
            elapsed_s=1.0,
            rate=20,
            base_rate=20,
            max_rate=50.0,
            sent=5,
            model_version="v",
            scenarios=["spike"],
            lanes=[],
        )

    def set_rate(self, rate: float) -> float:
        self.rates.append(rate)
        return rate

    def run_scenario(self, name: str) -> ScenarioState:
        if name != "spike":
            raise UnknownScenario(f"no scenario {name!r}: choose one of spike")
        if self.running:
            raise ScenarioBusy("scenario spike is still running")
        self.running = True
        return ScenarioState(name=name, running=True, started_s=1.0)


@pytest.fixture
def room() -> _Room:
    return _Room()


@pytest.fixture
def client(room: _Room) -> FlaskClient:
    return create_app(room).test_client()


def test_the_page_and_its_files_are_served_from_the_package(client: FlaskClient) -> None:
    assert (STATIC / "index.html").is_file()
    # A file response holds its file open until closed (ResourceWarning is an error here).
    with client.get("/") as page:
        assert page.status_code == 200 and b"<html" in page.data.lower()
    for name in ("app.js", "style.css"):
        with client.get(f"/static/{name}") as response:
            assert response.status_code == 200
    assert client.get("/static/../server.py").status_code == 404


def test_state_is_the_room_state_json(client: FlaskClient) -> None:
    body = client.get("/api/state").get_json()
    assert RoomState.model_validate(body).sent == 5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"rate": 0}, "rate: Input should be greater than 0"),
        ({"rate": 51}, "rate: Input should be less than or equal to 50"),
        ({"rate": "fast"}, "rate: Input should be a valid number"),
        ({}, "rate: Field required"),
        ([20], 'send a JSON object: {"rate": 20}'),
    ],
)
def test_a_bad_rate_is_refused_with_a_reason(
    client: FlaskClient, room: _Room, body: Any, expected: str
) -> None:
    answer = client.post("/api/rate", json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith(expected)
    assert room.rates == []


def test_a_body_that_is_not_json_is_refused(client: FlaskClient, room: _Room) -> None:
    answer = client.post("/api/rate", data=b"{rate", content_type="application/json")
    assert answer.status_code == 400 and "JSON object" in answer.get_json()["error"]
    assert room.rates == []


def test_an_oversized_body_is_refused_unread(client: FlaskClient, room: _Room) -> None:
    body = b'{"rate": 20, "pad": "' + b"x" * 1_000_000 + b'"}'
    answer = client.post("/api/rate", data=body, content_type="application/json")
    assert answer.status_code == 413
    assert answer.get_json() == {"error": 'the body is over 1024 bytes; send {"rate": 20}'}
    assert room.rates == []


def test_a_good_rate_reaches_the_room(client: FlaskClient, room: _Room) -> None:
    assert client.post("/api/rate", json={"rate": 35.5}).get_json() == {"rate": 35.5}
    assert room.rates == [35.5]


def test_scenarios_unknown_busy_and_started(client: FlaskClient) -> None:
    unknown = client.post("/api/scenario/meltdown")
    assert unknown.status_code == 404 and "no scenario 'meltdown'" in unknown.get_json()["error"]
    started = client.post("/api/scenario/spike")
    assert started.status_code == 202 and started.get_json()["running"] is True
    busy = client.post("/api/scenario/spike")
    assert busy.status_code == 409 and "still running" in busy.get_json()["error"]


def test_unknown_paths_and_methods_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/nothing").get_json() == {"error": "no such page: /api/nothing"}
    wrong = client.get("/api/scenario/spike")
    assert wrong.status_code == 405 and "GET is not allowed" in wrong.get_json()["error"]


def test_the_report_is_served_as_markdown_and_png(client: FlaskClient) -> None:
    text = client.get("/api/report.md")
    assert text.mimetype == "text/markdown"
    assert "# Classroom report" in text.get_data(as_text=True)
    assert "No scenario has run yet." in text.get_data(as_text=True)
    image = client.get("/api/report.png")
    assert image.mimetype == "image/png" and image.data[:8] == b"\x89PNG\r\n\x1a\n"
