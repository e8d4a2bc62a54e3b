"""`deploy classroom` for real: the three lanes run, every scenario runs from the CLI and its
measured outcome holds (nothing lost, identical batch rerun, zero failed requests during the
model update), the report is written, and SIGTERM leaves no process behind.

The tests of this file share one room and run in order (``--dist loadfile``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from deploy_modes.classroom.state import RoomState, ScenarioState
from deploy_modes.launch.processes import ManagedProcess, free_port

pytestmark = pytest.mark.integration

DEPLOY = str(Path(sys.executable).parent / "deploy")


class _Room:
    def __init__(self, process: ManagedProcess, url: str, env: dict[str, str], cwd: Path) -> None:
        self.process = process
        self.url = url
        self.env = env
        self.cwd = cwd

    def state(self) -> RoomState:
        with urllib.request.urlopen(f"{self.url}/api/state", timeout=30) as answer:
            return RoomState.model_validate(json.loads(answer.read()))

    def deploy(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DEPLOY, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.cwd,
            env={**self.env},
            check=False,
        )

    def scenario(self, name: str) -> ScenarioState:
        done = self.deploy("classroom", "scenario", name, "--url", self.url)
        assert done.returncode == 0, done.stdout + done.stderr + self.process.tail(30)
        assert f"{name}: passed" in done.stdout
        found = [s for s in self.state().history if s.name == name]
        assert found and found[-1].ok, found
        return found[-1]

    def lanes(self) -> dict[str, Any]:
        return {lane.mode: lane for lane in self.state().lanes}


@pytest.fixture(scope="module")
def room(
    model_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Room]:
    import os

    cwd = tmp_path_factory.mktemp("classroom")
    port = free_port()
    env = {
        **os.environ,
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "DEPLOY_DATA_DIR": str(data_dir),  # the new-model scenario trains on the small months
        "PYTHONUNBUFFERED": "1",
    }
    process = ManagedProcess(
        "deploy classroom",
        [DEPLOY, "classroom", "--port", str(port), "--rate", "20", "--batch-interval", "6"],
        env=env,
        log_path=cwd / "classroom.log",
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while f"classroom ready: {url}/" not in (cwd / "classroom.log").read_text():
        assert process.poll() is None, process.tail(40)
        assert time.monotonic() < deadline, process.tail(40)
        time.sleep(0.5)
    yield _Room(process, url, env, cwd)
    process.stop(timeout=60)
    process.kill()


def _until(room: _Room, what: str, condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert room.process.poll() is None, room.process.tail(40)
        assert time.monotonic() < deadline, f"timed out waiting for {what}:{room.process.tail(20)}"
        time.sleep(0.5)


def test_the_three_lanes_predict_and_every_answer_is_checked(room: _Room) -> None:
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
        assert lane.memory_mb > 0 and lane.processes >= 1, lane  # batch: the last run's peak
    stream = room.lanes()["stream"]
    assert len(stream.backlog_detail) == 4  # lag per shard


def test_spike(room: _Room) -> None:
    numbers = room.scenario("spike").numbers
    assert numbers["web_failed_requests"] == 0
    assert numbers["stream_drain_s"] != "never"
    assert numbers["batch_waiting_peak"] > numbers["batch_waiting_before"]


def test_kill(room: _Room) -> None:
    numbers = room.scenario("kill").numbers
    assert numbers["stream_lost"] == 0
    assert numbers["stream_shards_of_killed"] >= 1
    assert numbers["batch_rerun_identical"] == "yes"
    assert numbers["batch_output_after_kill"] in (
        "none",
        "complete (the kill came after the rename)",
    )
    assert numbers["web_worker_replaced_s"] != "never"


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
        timeout=30,
    )
    state = room.state()
    assert state.model_version == new
    for lane in state.lanes:
        assert lane.mismatches == 0, lane


def test_scale(room: _Room) -> None:
    numbers = room.scenario("scale").numbers
    assert numbers["web_workers_after"] == numbers["web_workers_before"] + 1
    assert str(numbers["shards_after"]).count("consumer") == 3


def test_bad_input_gets_a_clear_error(room: _Room) -> None:
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


def test_report_writes_markdown_and_a_chart(room: _Room, tmp_path: Path) -> None:
    done = room.deploy("classroom", "report", "--url", room.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "classroom.md").read_text()
    for name in ("spike", "kill", "emulator-restart", "new-model", "scale"):
        assert f"### {name} (passed" in text
    assert (tmp_path / "classroom.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_mismatch_anywhere_and_sigterm_stops_everything(room: _Room) -> None:
    for lane in room.lanes().values():
        assert lane.mismatches == 0 and lane.checked > 0, lane
    tree = psutil.Process(room.process.pid).children(recursive=True)
    assert tree, "the room started no process"
    code = room.process.stop(timeout=60, sig=signal.SIGTERM)
    assert code == 0, room.process.tail(30)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [p.pid for p in alive]
    assert "Traceback" not in (room.cwd / "classroom.log").read_text()
