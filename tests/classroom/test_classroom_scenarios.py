"""`deploy classroom` for real: the three lanes run, every scenario runs from the CLI and its
measured outcome holds (nothing lost, identical batch rerun, zero failed requests during the
model update), the report is written, and SIGTERM leaves no process behind.

The tests of this file share one room and run in order (``--dist loadfile``).
"""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
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

from deploy_modes.launch.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def room(
    model_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Room]:
    cwd = tmp_path_factory.mktemp("classroom")
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_DATA_DIR": str(data_dir),  # the new-model scenario trains on the small months
        "PYTHONUNBUFFERED": "1",
    }
    args = ["--rate", "20", "--batch-interval", "6"]
    with running_room(args, env, cwd, ready_within=180, patience=120) as room:
        yield room


def test_the_three_lanes_predict_and_every_answer_is_checked(room: Room) -> None:
    check_lanes_predict(room)
    for lane in room.lanes().values():
        assert lane.memory_mb > 0 and lane.processes >= 1, lane  # batch: the last run's peak
    stream = room.lanes()["stream"]
    assert len(stream.backlog_detail) == 4  # lag per shard


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


def test_bad_input_gets_a_clear_error(room: Room) -> None:
    unknown = room.deploy("classroom", "scenario", "meltdown", "--url", room.url)
    assert unknown.returncode == 1
    assert "no scenario 'meltdown'" in unknown.stderr + unknown.stdout
    assert "Traceback" not in unknown.stderr
    nobody = room.deploy(
        "classroom", "scenario", "spike", "--url", f"http://127.0.0.1:{free_port()}"
    )
    assert nobody.returncode == 1 and "no classroom answers" in nobody.stderr + nobody.stdout
    request = urllib.request.Request(f"{room.url}/api/rate", data=b"{", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    refused.value.close()  # the error holds the answer's socket


def test_report_writes_markdown_and_a_chart(room: Room, tmp_path: Path) -> None:
    done = room.deploy("classroom", "report", "--url", room.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "classroom.md").read_text()
    for name in ("spike", "kill", "emulator-restart", "new-model", "scale"):
        assert f"### {name} (passed" in text
    assert (tmp_path / "classroom.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_mismatch_anywhere_and_sigterm_stops_everything(room: Room) -> None:
    check_no_mismatch_anywhere(room)
    tree = psutil.Process(room.process.pid).children(recursive=True)
    assert tree, "the room started no process"
    code = room.process.stop(timeout=60, sig=signal.SIGTERM)
    assert code == 0, room.process.tail(30)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [p.pid for p in alive]
    assert "Traceback" not in (room.cwd / "classroom.log").read_text()
