"""``.ci/run`` cannot pass with the PostgreSQL tests skipped: a missing server fails the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A PostgreSQL-only test; its first fixture asks for the server, so nothing costly runs first.
PG_TEST = (
    "tests/batch/test_writers_failures.py::"
    "test_postgres_commit_failure_fails_the_job_and_keeps_the_old_rows"
)


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PG_TEST],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ci_run_demands_postgres_before_running_the_tests() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    demand = re.search(r"^export DEPLOY_REQUIRE_POSTGRES=1\b", script, re.MULTILINE)
    url = re.search(r"^DEPLOY_TEST_POSTGRES_URL=\$\(bash \.ci/postgres\.sh", script, re.MULTILINE)
    # The README's test command, as its quick start shows it, is the line .ci/run runs.
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"docs-harness: skip=suite\n(\.venv/bin/pytest[^\n]*)\n", readme)
    assert command, "the README shows no test command"
    tests = re.search(rf"^{re.escape(command.group(1))}$", script, re.MULTILINE)
    assert demand and url and tests, script
    assert demand.start() < tests.start() and url.start() < tests.start()


@pytest.mark.integration
def test_a_postgres_test_without_a_server_fails_when_required_and_skips_otherwise() -> None:
    required = _pytest({"DEPLOY_REQUIRE_POSTGRES": "1"})
    assert required.returncode == 1, required.stdout
    assert "DEPLOY_REQUIRE_POSTGRES=1 forbids skipping" in required.stdout
    assert re.search(r"\b1 error\b", required.stdout), required.stdout
    assert "skipped" not in required.stdout
    relaxed = _pytest({})
    assert relaxed.returncode == 0, relaxed.stdout
    assert re.search(r"\b1 skipped\b", relaxed.stdout), relaxed.stdout
