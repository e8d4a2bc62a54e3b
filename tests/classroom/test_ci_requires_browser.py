"""``.ci/run`` cannot pass with the browser test skipped: a missing Chromium fails the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The browser test asks for Chromium in its first fixture, so nothing costly runs first.
BROWSER_TEST = "tests/classroom/test_classroom_browser.py"


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    missing = {"DEPLOY_TEST_CHROMIUM": str(ROOT / "no-such-chromium")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", BROWSER_TEST],
        cwd=ROOT,
        env={**clean, **missing, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ci_run_installs_chromium_and_demands_it_before_running_the_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    demand = re.search(r"^export .*\bDEPLOY_REQUIRE_BROWSER=1\b", script, re.MULTILINE)
    install = re.search(r"apt-get install .*\bchromium\b", script)
    tests = re.search(r"^\.venv/bin/pytest -n 2$", script, re.MULTILINE)
    assert demand and install and tests, script
    assert demand.start() < tests.start() and install.start() < tests.start()
    # `playwright install` would download a browser (a comment may name it).
    assert not re.search(r"^[^#]*\bplaywright install", script, re.MULTILINE), script


@pytest.mark.integration
def test_the_browser_test_without_chromium_fails_when_required_and_skips_otherwise() -> None:
    required = _pytest({"DEPLOY_REQUIRE_BROWSER": "1"})
    assert required.returncode == 1, required.stdout
    assert "DEPLOY_REQUIRE_BROWSER=1 forbids skipping" in required.stdout
    assert re.search(r"\b1 error\b", required.stdout), required.stdout
    assert "skipped" not in required.stdout
    relaxed = _pytest({})
    assert relaxed.returncode == 0, relaxed.stdout
    assert re.search(r"\b1 skipped\b", relaxed.stdout), relaxed.stdout
