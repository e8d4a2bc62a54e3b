"""Talk to a running classroom over its JSON API: read the state, run a scenario to its end."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from deploy_modes.classroom.state import RoomState, ScenarioState
from deploy_modes.core.errors import DeployError

__all__ = ["SCENARIO_TIMEOUT", "get_state", "run_scenario"]

SCENARIO_TIMEOUT = 900.0


def _call(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": f"HTTP {exc.code}"}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeployError(
            f"no classroom answers at {url} ({reason}): start one with `deploy classroom`"
        ) from exc


def get_state(base: str) -> RoomState:
    """Return the room's state."""
    status, body = _call(f"{base}/api/state")
    if status != 200:
        raise DeployError(f"{base}/api/state answered {status}: {body.get('error', body)}")
    return RoomState.model_validate(body)


def run_scenario(
    base: str, name: str, say: Callable[[str], None], timeout: float = SCENARIO_TIMEOUT
) -> ScenarioState:
    """Start scenario ``name``, say each phase, return it when it has finished."""
    status, body = _call(f"{base}/api/scenario/{name}", "POST")
    if status != 202:
        raise DeployError(body.get("error", f"HTTP {status}"))
    started = ScenarioState.model_validate(body)
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        state = get_state(base)
        current = state.current
        if current is None or current.started_s != started.started_s or current.name != name:
            found = [s for s in state.history if s.started_s == started.started_s]
            if found:
                return found[-1]
            raise DeployError(f"scenario {name} disappeared from the room")
        if current.phase and current.phase != said:
            say(current.phase)
            said = current.phase
        if not current.running:
            return current
        time.sleep(0.5)
    raise DeployError(f"scenario {name} did not finish within {timeout:.0f} s")
