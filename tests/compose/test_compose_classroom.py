"""`deploy classroom --runtime compose` for real: the three lanes predict from their stacks, the
five scenarios run from the CLI with their measured outcomes asserted (nothing lost, an identical
batch rerun, zero failed requests during the model update), and SIGTERM takes every stack
down.

The tests of this file share one room and run in order (``--dist loadfile``). Its own project
prefix keeps its stacks apart from anyone else's on the engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.classroom.state import RoomState, ScenarioState
from deploy_modes.compose.stack import MODES, Stack
from deploy_modes.launch.processes import ManagedProcess, free_port

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

DEPLOY = str(Path(sys.executable).parent / "deploy")
PREFIX = "deploy-classroom-test"


class _Room:
    def __init__(self, process: ManagedProcess, url: str, env: dict[str, str], cwd: Path) -> None:
        self.process = process
        self.url = url
        self.env = env
        self.cwd = cwd

    def state(self) -> RoomState:
        with urllib.request.urlopen(f"{self.url}/api/state", timeout=30) as answer:
            return RoomState.model_validate(json.loads(answer.read()))

    def scenario(self, name: str) -> ScenarioState:
        done = subprocess.run(
            [DEPLOY, "classroom", "scenario", name, "--url", self.url],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=self.cwd,
            env=self.env,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr + self.process.tail(40)
        assert f"{name}: passed" in done.stdout
        found = [s for s in self.state().history if s.name == name]
        assert found and found[-1].ok, found
        return found[-1]

    def lanes(self) -> dict[str, Any]:
        return {lane.mode: lane for lane in self.state().lanes}


def _stacks() -> list[Stack]:
    return [Stack(mode, prefix=PREFIX) for mode in MODES]


@pytest.fixture(scope="module")
def room(
    docker_engine: str, model_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Room]:
    for stack in _stacks():
        assert not stack.containers(), f"{stack.project} already runs: deploy down first"
    cwd = tmp_path_factory.mktemp("classroom-compose")
    port = free_port()
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_DATA_DIR": str(data_dir),  # the new-model scenario trains on the small months
        "DEPLOY_COMPOSE_PROJECT_PREFIX": PREFIX,
        "PYTHONUNBUFFERED": "1",
    }
    process = ManagedProcess(
        "deploy classroom",
        [
            *(DEPLOY, "classroom", "--runtime", "compose", "--port", str(port)),
            *("--rate", "20", "--batch-interval", "8"),
        ],
        env=env,
        log_path=cwd / "classroom.log",
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # image builds: minutes on a cold cache
    try:
        while f"classroom ready: {url}/" not in (cwd / "classroom.log").read_text():
            assert process.poll() is None, process.tail(60)
            assert time.monotonic() < deadline, process.tail(60)
            time.sleep(1)
        yield _Room(process, url, env, cwd)
    finally:
        process.stop(timeout=120)
        process.kill()
        for stack in _stacks():  # a failed run must not leave stacks for the next test
            if stack.containers():
                stack.down()


def _until(room: _Room, what: str, condition: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert room.process.poll() is None, room.process.tail(40)
        assert time.monotonic() < deadline, f"timed out waiting for {what}:{room.process.tail(20)}"
        time.sleep(0.5)


def test_the_three_lanes_predict_from_their_stacks(room: _Room) -> None:
    _until(
        room,
        "a prediction in every lane",
        lambda: all(
            lane.predictions_out > 0 and lane.checked > 0 for lane in room.lanes().values()
        ),
    )
    for lane in room.lanes().values():
        assert lane.mismatches == 0, lane
        assert lane.version == room.state().model_version
    assert "replicas behind nginx" in room.lanes()["web"].detail
    # Web and stream run all along; a batch container exists only while a run runs.
    for stack in (s for s in _stacks() if s.mode != "batch"):
        assert stack.containers(), f"{stack.project} runs no container"


def test_spike(room: _Room) -> None:
    numbers = room.scenario("spike").numbers
    assert numbers["web_failed_requests"] == 0
    assert numbers["stream_drain_s"] != "never"
    assert numbers["batch_waiting_peak"] > numbers["batch_waiting_before"]


def test_kill(room: _Room) -> None:
    numbers = room.scenario("kill").numbers
    assert numbers["web_worker_replaced_s"] != "never"
    assert numbers["stream_shards_of_killed"] >= 1
    assert numbers["stream_lost"] == 0
    assert numbers["batch_rerun_identical"] == "yes"
    assert numbers["batch_output_after_kill"] in (
        "none",
        "complete (the kill came after the rename)",
    )


def test_emulator_restart(room: _Room) -> None:
    numbers = room.scenario("emulator-restart").numbers
    assert numbers["skipped"] == 0
    assert numbers["rides_held"] > 0


def test_new_model(room: _Room) -> None:
    old = room.state().model_version
    scenario = room.scenario("new-model")
    new = scenario.numbers["new_version"]
    assert new != old and scenario.numbers["web_failed_requests"] == 0
    # The page's state is measured once a second: the last answers may be a sample away.
    _until(
        room,
        "the new version in every lane's sample",
        lambda: all(lane.versions.get(str(new), 0) > 0 for lane in room.state().lanes),
        timeout=60,
    )
    for lane in room.state().lanes:
        assert lane.mismatches == 0, lane


def test_scale(room: _Room) -> None:
    numbers = room.scenario("scale").numbers
    assert numbers["web_workers_after"] == numbers["web_workers_before"] + 1
    assert str(numbers["shards_after"]).count("consumer") == 3


def test_sigterm_takes_every_stack_down(room: _Room) -> None:
    for lane in room.lanes().values():
        assert lane.mismatches == 0 and lane.checked > 0, lane
    code = room.process.stop(timeout=120, sig=signal.SIGTERM)
    assert code == 0, room.process.tail(30)
    for stack in _stacks():
        assert not stack.containers(), f"{stack.project} left containers behind"
    assert "Traceback" not in (room.cwd / "classroom.log").read_text()
