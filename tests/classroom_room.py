"""A `deploy classroom` under test, and the checks its scenarios must pass on any runtime.

tests/classroom (local processes) and tests/compose (stacks) start a room each, from the CLI,
and run the same five scenarios through `deploy classroom scenario`; only the start-up time,
the room's arguments and what "everything stopped" means differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy_modes.classroom.state import LaneState, RoomState, ScenarioState
from deploy_modes.launch.processes import ManagedProcess, free_port

__all__ = [
    "DEPLOY",
    "Room",
    "check_emulator_restart",
    "check_kill",
    "check_lanes_predict",
    "check_new_model",
    "check_no_mismatch_anywhere",
    "check_scale",
    "check_spike",
    "running_room",
]

DEPLOY = str(Path(sys.executable).parent / "deploy")


class Room:
    """A running room: its process, its URL, and the environment its CLI calls get."""

    def __init__(
        self, process: ManagedProcess, url: str, env: dict[str, str], cwd: Path, patience: float
    ) -> None:
        self.process = process
        self.url = url
        self.env = env
        self.cwd = cwd
        self.patience = patience  # seconds a wait may take on this runtime

    def state(self) -> RoomState:
        with urllib.request.urlopen(f"{self.url}/api/state", timeout=30) as answer:
            return RoomState.model_validate(json.loads(answer.read()))

    def lanes(self) -> dict[str, LaneState]:
        return {lane.mode: lane for lane in self.state().lanes}

    def deploy(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DEPLOY, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env=self.env,
            check=False,
        )

    def scenario(self, name: str) -> ScenarioState:
        """Run scenario ``name`` from the CLI; return its outcome once it passed."""
        done = self.deploy("classroom", "scenario", name, "--url", self.url)
        assert done.returncode == 0, done.stdout + done.stderr + self.process.tail(40)
        assert f"{name}: passed" in done.stdout
        found = [s for s in self.state().history if s.name == name]
        assert found and found[-1].ok, found
        return found[-1]

    def until(self, what: str, condition: Callable[[], bool], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.patience)
        while not condition():
            assert self.process.poll() is None, self.process.tail(40)
            late = f"timed out waiting for {what}:{self.process.tail(20)}"
            assert time.monotonic() < deadline, late
            time.sleep(0.5)


@contextmanager
def running_room(
    args: list[str], env: dict[str, str], cwd: Path, ready_within: float, patience: float
) -> Iterator[Room]:
    """Start ``deploy classroom ARGS`` on a free port; stop it (SIGINT, then SIGKILL) after."""
    port = free_port()
    process = ManagedProcess(
        "deploy classroom",
        [DEPLOY, "classroom", "--port", str(port), *args],
        env=env,
        log_path=cwd / "classroom.log",
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_within
    try:
        while f"classroom ready: {url}/" not in (cwd / "classroom.log").read_text():
            assert process.poll() is None, process.tail(60)
            assert time.monotonic() < deadline, process.tail(60)
            time.sleep(0.5)
        yield Room(process, url, env, cwd, patience)
    finally:
        process.stop(timeout=120)
        process.kill()


def check_lanes_predict(room: Room) -> None:
    """Every lane predicts, every answer is checked, none differs from the reference."""
    room.until(
        "a prediction in every lane",
        lambda: all(
            lane.predictions_out > 0 and lane.checked > 0 for lane in room.lanes().values()
        ),
    )
    for lane in room.lanes().values():
        assert lane.mismatches == 0, lane
        assert lane.version == room.state().model_version


def check_spike(room: Room) -> None:
    numbers = room.scenario("spike").numbers
    assert numbers["web_failed_requests"] == 0
    assert numbers["stream_drain_s"] != "never"
    assert numbers["batch_waiting_peak"] > numbers["batch_waiting_before"]


def check_kill(room: Room) -> None:
    numbers = room.scenario("kill").numbers
    assert numbers["web_worker_replaced_s"] != "never"
    assert numbers["stream_shards_of_killed"] >= 1
    assert numbers["stream_lost"] == 0
    assert numbers["batch_rerun_identical"] == "yes"
    assert numbers["batch_output_after_kill"] in (
        "none",
        "complete (the kill came after the rename)",
    )


def check_emulator_restart(room: Room) -> None:
    numbers = room.scenario("emulator-restart").numbers
    assert numbers["skipped"] == 0
    assert numbers["rides_held"] > 0


def check_new_model(room: Room) -> None:
    old = room.state().model_version
    scenario = room.scenario("new-model")
    new = scenario.numbers["new_version"]
    assert new != old and scenario.numbers["web_failed_requests"] == 0
    # The page's state is measured once a second: the last answers may be a sample away.
    room.until(
        "the new version in every lane's sample",
        lambda: all(lane.versions.get(str(new), 0) > 0 for lane in room.state().lanes),
    )
    state = room.state()
    assert state.model_version == new
    for lane in state.lanes:
        assert lane.mismatches == 0, lane


def check_scale(room: Room) -> None:
    numbers = room.scenario("scale").numbers
    assert numbers["web_workers_after"] == numbers["web_workers_before"] + 1
    assert str(numbers["shards_after"]).count("consumer") == 3


def check_no_mismatch_anywhere(room: Room) -> None:
    for lane in room.lanes().values():
        assert lane.mismatches == 0 and lane.checked > 0, lane
