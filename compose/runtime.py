"""Where a mode runs: local processes or Docker Compose, chosen once per command."""

from __future__ import annotations

from enum import StrEnum

from deploy_modes.compose.stack import connect_engine
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.terminal import say

__all__ = ["Runtime", "docker_engine_answers", "resolve_runtime"]


class Runtime(StrEnum):
    """The runtimes a mode command accepts; ``auto`` picks compose when Docker answers."""

    auto = "auto"
    local = "local"
    compose = "compose"


def docker_engine_answers() -> tuple[bool, str]:
    """Return whether a Docker engine answers (checked with the docker SDK) and why not."""
    client, version = connect_engine(timeout=3)
    if client is None:
        return False, version
    client.close()
    return True, f"Docker engine {version} answers"


def resolve_runtime(requested: Runtime | str) -> Runtime:
    """Return ``local`` or ``compose`` for ``requested`` (auto|local|compose), saying why."""
    try:
        requested = Runtime(requested)
    except ValueError:
        choices = ", ".join(r.value for r in Runtime)
        raise DeployError(f"--runtime must be one of {choices}, got {requested!r}") from None
    if requested is Runtime.local:
        return Runtime.local
    answers, why = docker_engine_answers()
    if requested is Runtime.compose:
        if not answers:
            raise DeployError(f"--runtime compose needs Docker: {why}; or use --runtime local")
        return Runtime.compose
    chosen = Runtime.compose if answers else Runtime.local
    say(f"runtime: {chosen.value} ({why})")
    return chosen
