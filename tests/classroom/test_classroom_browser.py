"""The classroom page in a real browser, against a real ``deploy classroom``.

The system Chromium (Playwright, no downloaded browser) loads the page the command prints,
watches the three lanes fill, sets the rate, runs every scenario by its button and reads each
outcome on the page. With ``DEPLOY_CLASSROOM_SCREENSHOTS=1`` it also rewrites the two
screenshots in docs/ (CI leaves tracked files alone).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy_modes.launch.processes import ManagedProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = str(Path(sys.executable).parent / "deploy")  # the venv's console script
MODES = ("web", "stream", "batch")
READY = re.compile(r"(http://127\.0\.0\.1:\d+/?)")
# A scenario waits up to minutes for lanes to catch up (classroom/scenarios.py): generous.
SCENARIO_TIMEOUT_MS = 420_000
SCREENSHOTS = os.environ.get("DEPLOY_CLASSROOM_SCREENSHOTS") == "1"


@pytest.fixture
def classroom(tmp_path: Path, model_dir: Path) -> Iterator[tuple[str, ManagedProcess]]:
    """Start ``deploy classroom`` on a free port; return the URL it prints and the process."""
    log = tmp_path / "classroom.log"
    env = {"DEPLOY_MODEL_LOCATION": str(model_dir), "PYTHONUNBUFFERED": "1"}
    args = [DEPLOY, "classroom", "--port", str(free_port()), "--rate", "10"]
    # cwd: the demo months the new-model scenario trains on land in tmp_path, not the checkout.
    process = ManagedProcess(
        "classroom", [*args, "--batch-interval", "5"], env=env, log_path=log, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 180
        while not (found := READY.search(log.read_text() if log.is_file() else "")):
            assert process.poll() is None, f"deploy classroom exited early:{process.tail(40)}"
            if time.monotonic() > deadline:
                pytest.fail(f"deploy classroom printed no URL within 180 s:{process.tail(40)}")
            time.sleep(0.2)
        yield found.group(1), process
    finally:
        code = process.stop(timeout=60)
        assert code == 0, f"deploy classroom stopped with {code}:{process.tail(40)}"


def _value(page: Any, testid: str) -> float:
    """Return the raw number behind a figure on the page (its data-value)."""
    raw = page.get_by_test_id(testid).get_attribute("data-value")
    return float(raw) if raw else 0.0


def _wait(page: Any, condition: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        page.wait_for_timeout(250)


def test_the_page_shows_three_live_lanes_and_runs_every_scenario(
    browser: Any, classroom: tuple[str, ManagedProcess], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url, process = classroom
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def console(message: Any) -> None:
        # The refused rate below is a 400 Chromium reports as an error; nothing else may be.
        if message.type == "error" and "status of 400" not in message.text:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", console)

    def only_loopback(route: Any) -> None:
        # The page works offline: anything not from 127.0.0.1 (a CDN, a font) is a bug.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    try:
        page.goto(url)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-ok", "true")
        for mode in MODES:
            expect(page.get_by_test_id(f"lane-{mode}")).to_be_visible()

        # Every lane answers rides: predictions out grow in each (batch once it has run).
        before = {mode: _value(page, f"lane-{mode}-predictions") for mode in MODES}
        _wait(
            page,
            lambda: all(_value(page, f"lane-{m}-predictions") > before[m] for m in MODES),
            "predictions in all three lanes",
            120,
        )
        for mode in MODES:
            expect(page.get_by_test_id(f"lane-{mode}-status")).not_to_be_empty()
            assert page.get_by_test_id(f"lane-{mode}").get_attribute("data-red") == "false"
        if SCREENSHOTS:
            page.screenshot(path=ROOT / "docs" / "classroom-page.png")

        # The rate: the server's refusal is shown, an accepted rate is echoed and used.
        page.get_by_test_id("rate-input").fill("100000")
        page.get_by_test_id("rate-apply").click()
        expect(page.get_by_test_id("rate-message")).to_have_attribute("data-kind", "error")
        page.get_by_test_id("rate-input").fill("12")
        page.get_by_test_id("rate-apply").click()
        expect(page.get_by_test_id("rate-message")).to_have_attribute("data-kind", "ok")
        expect(page.get_by_test_id("room-rate")).to_have_attribute("data-value", "12")

        buttons = page.get_by_test_id("scenario-buttons").get_by_role("button")
        names = [buttons.nth(i).get_attribute("data-name") for i in range(buttons.count())]
        assert names == ["spike", "kill", "emulator-restart", "new-model", "scale"]
        panel = page.get_by_test_id("scenario-panel")
        for done, name in enumerate(names):
            page.get_by_test_id(f"scenario-{name}").click()
            expect(panel).to_have_attribute("data-name", name)
            # While it runs, no second scenario can be started from the page.
            for other in names:
                expect(page.get_by_test_id(f"scenario-{other}")).to_be_disabled()
            expect(page.get_by_test_id("history-item")).to_have_count(
                done + 1, timeout=SCENARIO_TIMEOUT_MS
            )
            expect(panel).to_have_attribute("data-name", name)
            explanation = page.get_by_test_id("scenario-explanation").inner_text()
            assert panel.get_attribute("data-state") == "ok", f"{name} failed: {explanation}"
            expect(page.get_by_test_id("scenario-badge")).to_contain_text("OK")
            assert len(explanation) > 40, explanation
            newest = page.get_by_test_id("history-item").first
            expect(newest).to_have_attribute("data-name", name)
            expect(newest).to_have_attribute("data-ok", "true")
            for button in names:
                expect(page.get_by_test_id(f"scenario-{button}")).to_be_enabled()
            if name == "new-model":  # every lane now answers with the room's new model
                version = page.get_by_test_id("room-model").get_attribute("data-value")
                for mode in MODES:
                    expect(page.get_by_test_id(f"lane-{mode}-version")).to_have_attribute(
                        "data-value", version or ""
                    )
            if SCREENSHOTS and name == "spike":
                page.mouse.move(0, 0)  # no button shown hovered in the picture
                page.screenshot(path=ROOT / "docs" / "classroom-scenario.png", full_page=True)

        for mode in MODES:  # every prediction checked so far matched the model's own
            assert page.get_by_test_id(f"lane-{mode}").get_attribute("data-red") == "false"
        # The page's report links answer: the notes name every scenario run.
        notes = page.request.get(page.get_by_test_id("report-md").evaluate("(a) => a.href"))
        assert notes.ok and all(name in notes.text() for name in names), notes.text()[:500]
        chart = page.request.get(page.get_by_test_id("report-png").evaluate("(a) => a.href"))
        assert chart.ok and chart.body().startswith(b"\x89PNG")
    except BaseException:
        # What the room said and what the page showed, to tell a page bug from a room's.
        page.screenshot(path=tmp_path / "failure.png", full_page=True)
        print(f"page at failure: {tmp_path / 'failure.png'}\nroom log:{process.tail(60)}")
        raise
    finally:
        page.close()
    assert not problems, f"{problems}\nroom log:{process.tail(60)}"
    assert not outside, outside
