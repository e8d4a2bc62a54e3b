"""`deploy classroom --runtime compose` for real: the three lanes predict from their stacks, the
five scenarios run from the CLI with their measured outcomes asserted (nothing lost, an identical
batch rerun, zero failed requests during the model update), and SIGTERM takes every stack
down.

The tests of this file share one room and run in order (``--dist loadfile``). Its own project
prefix keeps its stacks apart from anyone else's on the engine.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from classroom_room import (
    Room,
    check_emulator_restart,
    check_kill,
    check_lanes_predict,
    check_new_model,
    check_no_mismatch_anywhere,
    check_scale,
    check_spike,
    running_room,
)

from deploy_modes.compose.stack import MODES, Stack

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

PREFIX = "deploy-classroom-test"


def _stacks() -> list[Stack]:
    return [Stack(mode, prefix=PREFIX) for mode in MODES]


@pytest.fixture(scope="module")
def room(
    docker_engine: str, model_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Room]:
    for stack in _stacks():
        assert not stack.containers(), f"{stack.project} already runs: deploy down first"
    cwd = tmp_path_factory.mktemp("classroom-compose")
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_DATA_DIR": str(data_dir),  # the new-model scenario trains on the small months
        "DEPLOY_COMPOSE_PROJECT_PREFIX": PREFIX,
        "PYTHONUNBUFFERED": "1",
    }
    args = ["--runtime", "compose", "--rate", "20", "--batch-interval", "8"]
    try:
        # Image builds take minutes on a cold cache.
        with running_room(args, env, cwd, ready_within=900, patience=180) as room:
            yield room
    finally:
        for stack in _stacks():  # a failed run must not leave stacks for the next test
            if stack.containers():
                stack.down()


def test_the_three_lanes_predict_from_their_stacks(room: Room) -> None:
    check_lanes_predict(room)
    assert "replicas behind nginx" in room.lanes()["web"].detail
    # Web and stream run all along; a batch container exists only while a run runs.
    for stack in (s for s in _stacks() if s.mode != "batch"):
        assert stack.containers(), f"{stack.project} runs no container"


def test_spike(room: Room) -> None:
    check_spike(room)


def test_kill(room: Room) -> None:
    check_kill(room)


def test_emulator_restart(room: Room) -> None:
    check_emulator_restart(room)


def test_new_model(room: Room) -> None:
    check_new_model(room)


def test_scale(room: Room) -> None:
    check_scale(room)


def test_sigterm_takes_every_stack_down(room: Room) -> None:
    check_no_mismatch_anywhere(room)
    code = room.process.stop(timeout=120, sig=signal.SIGTERM)
    assert code == 0, room.process.tail(30)
    for stack in _stacks():
        assert not stack.containers(), f"{stack.project} left containers behind"
    assert "Traceback" not in (room.cwd / "classroom.log").read_text()
