"""Fixtures for the compose tests: a real Docker engine or a visible skip, and stack teardown."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy_modes.compose.runtime import docker_engine_answers
from deploy_modes.compose.stack import Stack, compose_command

DEPLOY = str(Path(sys.executable).parent / "deploy")


def require_or_skip(env_var: str, reason: str) -> None:
    """Fail when CI demands Docker (``env_var=1``), skip visibly otherwise.

    The same rule as the top-level conftest's helper; a conftest cannot import another one
    (both are module ``conftest``), so it is repeated here.
    """
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{reason} (and {env_var}=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> str:
    """Return the engine version (printed once), or skip (fail in CI) when none answers."""
    answers, why = docker_engine_answers()
    if not answers:
        require_or_skip("DEPLOY_REQUIRE_DOCKER", f"{why}: start one with `bash .ci/docker.sh`")
    try:
        compose = " ".join(compose_command())
    except Exception as exc:  # DeployError: no compose installed
        require_or_skip("DEPLOY_REQUIRE_DOCKER", str(exc))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"docker e2e: {why}; compose: {compose}")
    return why


@pytest.fixture
def stack_teardown() -> Iterator[list[str]]:
    """Yield a list to append modes to; their stacks are torn down afterwards, even on failure.

    On a failing test the containers' logs are printed first.
    """
    modes: list[str] = []
    yield modes
    for mode in modes:
        stack = Stack(mode)
        with contextlib.suppress(Exception):
            if any(state.status != "running" or not state.healthy for state in stack.containers()):
                stack.print_logs()
        stack.down()
        assert not stack.containers(), f"{stack.project} left containers behind"


def run_deploy(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    """Run the real ``deploy`` console script and return its result (output captured)."""
    return subprocess.run(
        [DEPLOY, *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def deploy_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Return a runner of the real ``deploy`` console script: ``deploy_cli(args, cwd, env)``."""
    return run_deploy
