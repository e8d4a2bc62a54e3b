"""The classroom page in a real browser over the real app and a scripted room: seconds, not minutes.

What the real room rarely shows on demand: a lane with wrong answers, a scenario that fails,
a scenario refused because another started meanwhile (the CLI). The app is
``create_app`` itself; only the room behind it is scripted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from deploy_modes.classroom.room import ScenarioBusy
from deploy_modes.classroom.server import create_app
from deploy_modes.classroom.state import LaneState, RoomState, ScenarioState, Series
from deploy_modes.launch.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

NAMES = ["spike", "kill", "emulator-restart", "new-model", "scale"]
EXPLANATION = "The spike doubled the stream's lag and it did not catch up within 120 s."


def _lane(mode: str, predictions: int, mismatches: int = 0) -> LaneState:
    return LaneState(
        mode=mode,
        title=mode.title(),
        status="red" if mismatches else "ok",
        status_text="all good" if not mismatches else f"{mismatches} predictions differ",
        rides_in=predictions,
        predictions_out=predictions,
        throughput=10.0,
        p50_ms=3.0,
        p99_ms=None if mode == "batch" else 12.5,
        backlog=4,
        backlog_label="rides waiting",
        backlog_detail={"shard 000000000000": 3, "shard 000000000001": 1},
        errors=0,
        checked=predictions,
        mismatches=mismatches,
        version="abcdef123456",
        versions={"abcdef123456": predictions, "fedcba654321": 3}
        if mode == "web"
        else {"abcdef123456": predictions},
        memory_mb=100.0,
        processes=2,
        detail="2 workers",
        series=Series(t=[1.0, 2.0, 3.0], throughput=[9, 10, 11], p99_ms=[None, 12, 13]),
    )


class ScriptedRoom:
    """A room whose lanes grow each poll; spike runs for three polls and fails; kill is busy."""

    def __init__(self) -> None:
        self.polls = 0
        self.rates: list[float] = []
        self.current: ScenarioState | None = None
        self.history: list[ScenarioState] = []
        self.lock = threading.Lock()

    def state(self) -> RoomState:
        with self.lock:
            self.polls += 1
            if self.current is not None and self.current.running and self.polls > self.started + 3:
                self.current = self.current.model_copy(
                    update={"running": False, "ok": False, "finished_s": 9.0, "phase": "done"}
                    | {"explanation": EXPLANATION, "numbers": {"stream_lag_peak": 840}}
                )
                self.history.append(self.current)
            lanes = [
                _lane("web", 10 * self.polls),
                _lane("stream", 10 * self.polls),
                _lane("batch", 10 * self.polls, mismatches=2),
            ]
            return RoomState(
                elapsed_s=float(self.polls),
                rate=10.0,
                base_rate=10.0,
                max_rate=50.0,
                sent=10 * self.polls,
                model_version="abcdef123456",
                scenarios=NAMES,
                lanes=lanes,
                current=self.current,
                history=list(self.history),
            )

    def set_rate(self, rate: float) -> float:
        self.rates.append(rate)
        return rate

    def run_scenario(self, name: str) -> ScenarioState:
        with self.lock:
            if name == "kill":  # as if `deploy classroom scenario spike` started one meanwhile
                raise ScenarioBusy("scenario spike is still running")
            self.started = self.polls
            self.current = ScenarioState(name=name, running=True, started_s=0.0, phase="spiking")
            return self.current


@pytest.fixture
def scripted() -> Iterator[tuple[str, ScriptedRoom]]:
    """Serve the real app over a scripted room on a free loopback port."""
    from werkzeug.serving import make_server

    room = ScriptedRoom()
    server = make_server("127.0.0.1", free_port(), create_app(room), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", room
    server.shutdown()
    server.server_close()
    thread.join()


def test_wrong_answers_a_failed_scenario_and_a_refusal_are_unmistakable(
    browser: Any, scripted: tuple[str, ScriptedRoom]
) -> None:
    from playwright.sync_api import expect

    url, room = scripted
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        batch = page.get_by_test_id("lane-batch")
        # Red is never colour alone: the lane says it in words and marks the count.
        expect(batch).to_have_attribute("data-red", "true")
        expect(page.get_by_test_id("lane-batch-status")).to_have_text("\u2716 WRONG ANSWERS")
        expect(page.get_by_test_id("lane-batch-mismatches")).to_have_text("\u2716 2")
        for mode in ("web", "stream"):
            expect(page.get_by_test_id(f"lane-{mode}")).to_have_attribute("data-red", "false")
            expect(page.get_by_test_id(f"lane-{mode}-status")).to_have_text("\u2714 OK")
        expect(page.get_by_test_id("lane-stream-backlog-detail")).to_have_text(
            "shard 0: 3 \u00b7 shard 1: 1"
        )
        expect(page.get_by_test_id("lane-batch-p99")).to_have_text("\u2013")
        expect(page.get_by_test_id("lane-web-versions")).to_contain_text("fedcba65: 3")
        expect(page.get_by_test_id("lane-stream-versions")).to_have_text("\u00b7 1 version")

        # Projector-ready: 20 px text at least, big figures twice that, nothing cut at 1280.
        smallest = page.evaluate(
            """() => Math.min(...[...document.querySelectorAll('body *')]
                .filter((e) => e.offsetParent !== null && [...e.childNodes].some(
                    (n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim()))
                .map((e) => parseFloat(getComputedStyle(e).fontSize)))"""
        )
        assert smallest >= 20, smallest
        big = page.get_by_test_id("lane-web-throughput")
        assert float(big.evaluate("(e) => parseFloat(getComputedStyle(e).fontSize)")) >= 40
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280

        page.get_by_test_id("rate-input").fill("12.5")
        page.get_by_test_id("rate-apply").click()
        expect(page.get_by_test_id("rate-message")).to_have_attribute("data-kind", "ok")
        assert room.rates == [12.5]
        # The header and the controls (with the rate note) keep to one row each at 1280 px.
        rows = [("room-elapsed", "connection"), ("rate-message", "scenario-scale")]
        for first, last in rows:
            top = [page.get_by_test_id(testid).bounding_box()["y"] for testid in (first, last)]
            assert abs(top[0] - top[1]) < 12, (first, last, top)

        page.get_by_test_id("scenario-kill").click()
        expect(page.get_by_test_id("scenario-message")).to_contain_text("still running")

        page.get_by_test_id("scenario-spike").click()
        panel = page.get_by_test_id("scenario-panel")
        expect(panel).to_have_attribute("data-state", "running")
        expect(page.get_by_test_id("scenario-phase")).to_have_text("spiking")
        expect(page.get_by_test_id("scenario-scale")).to_be_disabled()
        expect(panel).to_have_attribute("data-state", "failed", timeout=15_000)
        expect(page.get_by_test_id("scenario-badge")).to_have_text("\u2716 FAILED")
        expect(page.get_by_test_id("scenario-explanation")).to_have_text(EXPLANATION)
        expect(page.get_by_test_id("scenario-numbers")).to_contain_text("840")
        expect(page.get_by_test_id("history-item")).to_have_attribute("data-ok", "false")
        # current still names the finished scenario: the buttons are free again.
        expect(page.get_by_test_id("scenario-scale")).to_be_enabled()
    finally:
        page.close()
    assert not errors, errors
