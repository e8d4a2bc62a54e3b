"""Where a mode runs: local processes or Docker Compose, and the compose-facing commands."""

from __future__ import annotations

from typing import Any

import typer

from deploy_modes.cli.console import say
from deploy_modes.core.errors import DeployError

__all__ = ["RUNTIMES", "compose_run", "docker_engine_answers", "register", "resolve_runtime"]

RUNTIMES = ("auto", "local", "compose")


def docker_engine_answers() -> tuple[bool, str]:
    """Return whether a Docker engine answers (checked with the docker SDK) and why not."""
    try:
        import docker
    except ImportError:
        return False, "the docker SDK is not installed (pip install 'deploy-modes[compose]')"
    try:
        client = docker.from_env(timeout=3)
        version = client.version().get("Version", "?")
        client.close()
    except Exception as exc:  # any failure to reach the engine means "no engine"
        return False, f"no Docker engine answers ({type(exc).__name__})"
    return True, f"Docker engine {version} answers"


def resolve_runtime(requested: str) -> str:
    """Return ``local`` or ``compose`` for ``requested`` (auto|local|compose), saying why."""
    if requested not in RUNTIMES:
        raise DeployError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {requested!r}")
    if requested == "local":
        return "local"
    answers, why = docker_engine_answers()
    if requested == "compose":
        if not answers:
            raise DeployError(f"--runtime compose needs Docker: {why}; or use --runtime local")
        return "compose"
    chosen = "compose" if answers else "local"
    say(f"runtime: {chosen} ({why})")
    return chosen


def compose_run(mode: str, **options: Any) -> None:
    """Bring up ``mode``'s compose stack (or run the batch job) and wait for health."""
    raise DeployError(f"the compose runtime for {mode} is not built yet: use --runtime local")


def register(app: typer.Typer) -> None:
    """Add ``status``, ``logs`` and ``down`` to the top-level app."""
