"""A scaled web stack on a real engine: 3 replicas behind nginx, under load (marker docker).

One stack for the module (``deploy web --runtime compose --replicas 3``, built once), one client
thread sending ``POST /predict`` back to back, each on a new connection, to the balancer. The
balancer's ``X-Upstream`` header names the replica that answered (its address on the stack's
network; with retries, every address tried, the answering one last), mapped to containers here.

Reviving a killed replica: Docker does not restart a container stopped by ``docker kill``, not
even with ``restart: unless-stopped`` (an operator's kill counts as a stop; only a process that
dies by itself is restarted). So the test kills it with ``docker kill`` (SIGKILL to the whole
container, requests in flight included) and then ``docker start``s it, as an operator or an
orchestrator would; it is not the restart policy bringing it back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loadclient import load_on

from deploy_modes.compose.replicas import CURRENT, replica_number, wait_replicas
from deploy_modes.compose.stack import PROJECT_LABEL, SERVICE_LABEL, Stack, docker_client
from deploy_modes.core.artifact import load_model
from deploy_modes.core.data import month_file
from deploy_modes.core.training import train_model
from deploy_modes.launch.processes import free_port

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

DEPLOY = str(Path(sys.executable).parent / "deploy")
REPLICAS = 3
# At most the one request in flight on the replica when it is killed may fail; nginx retries
# it on another replica (non_idempotent), so none should.
MAX_FAILED_ON_KILL = 1


def _deploy(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEPLOY, *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _replicas() -> dict[str, Any]:
    """Return the web replica containers by their address on the stack's network."""
    client = docker_client()
    found = client.containers.list(
        filters={"label": [f"{PROJECT_LABEL}={Stack('web').project}", f"{SERVICE_LABEL}=web"]}
    )
    by_address = {}
    for container in found:
        for network in container.attrs["NetworkSettings"]["Networks"].values():
            by_address[f"{network['IPAddress']}:9696"] = container
    return by_address


def _load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass(frozen=True)
class Scaled:
    cwd: Path
    port: int
    old: str


@pytest.fixture(scope="module")
def scaled(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """Bring the scaled stack up once for the module; ``deploy down web`` removes it after."""
    cwd = tmp_path_factory.mktemp("replicas")
    port = free_port()
    try:
        out = _ok(
            _deploy(
                [
                    *("web", "--runtime", "compose", "--replicas", str(REPLICAS)),
                    *("--port", str(port), "--model", str(model_dir)),
                ],
                cwd,
            )
        )
        assert f"{REPLICAS} web replicas behind nginx" in out
        yield Scaled(cwd, port, load_model(model_dir).version)
    finally:
        stack = Stack("web")
        with contextlib.suppress(Exception):
            if any(not s.healthy for s in stack.containers()):
                stack.print_logs()
        existed = bool(stack.containers())
        down = _ok(_deploy(["down", "web"], cwd))
        assert not existed or f"{stack.project}: removed" in down  # the test prefix's stack
        assert stack.containers() == [], "deploy down left the balancer or a replica behind"


@pytest.fixture(scope="module")
def other_model_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a second real duration model (months swapped: another version)."""
    out = tmp_path_factory.mktemp("model") / "ride-duration-2"
    train_model(data_dir / month_file(2021, 2), data_dir / month_file(2021, 1), out)
    return out


def _status_versions(cwd: Path) -> dict[str, str]:
    """Return ``deploy status``'s model column for each web replica row."""
    rows = {}
    for line in _ok(_deploy(["status"], cwd)).splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if len(cells) == 7 and cells[2].startswith("web #"):
            rows[cells[2]] = f"{cells[4]} {cells[6]}"
    return rows


def test_status_lists_each_replica_healthy_with_its_version(scaled: Scaled) -> None:
    rows = _status_versions(scaled.cwd)
    assert rows == {f"web #{n}": f"healthy {scaled.old}" for n in range(1, REPLICAS + 1)}
    balancer = [
        line for line in _ok(_deploy(["status"], scaled.cwd)).splitlines() if "balancer" in line
    ]
    assert len(balancer) == 1 and f"127.0.0.1:{scaled.port}->9696" in balancer[0]


def test_the_stack_is_the_test_prefixs_project_and_a_bad_prefix_is_one_line(
    scaled: Scaled,
) -> None:
    project = Stack("web").project
    assert project == f"{os.environ['DEPLOY_COMPOSE_PROJECT_PREFIX']}-web" != "deploy-web"
    found = docker_client().containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})
    assert len(found) == REPLICAS + 1  # the replicas and the balancer
    result = _deploy(["status"], scaled.cwd, {"DEPLOY_COMPOSE_PROJECT_PREFIX": "Not A Name"})
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid setting: DEPLOY_COMPOSE_PROJECT_PREFIX='Not A Name'")


def test_the_balancer_routes_around_a_killed_replica_and_back_to_it(scaled: Scaled) -> None:
    replicas = _replicas()
    assert len(replicas) == REPLICAS
    with load_on("127.0.0.1", scaled.port) as load:
        _wait_for(
            lambda: (
                set(Counter(a.upstream for a in load.answers)) == set(replicas)
                and min(Counter(a.upstream for a in load.answers).values()) >= 5
            ),
            "answers from every replica",
        )
        spread = Counter(a.upstream for a in load.answers)
        victim_address = sorted(replicas)[1]
        victim = replicas[victim_address]
        victim.kill()  # `docker kill`: SIGKILL, no graceful stop
        killed = time.monotonic()
        _wait_for(lambda: len(load.since(killed)) >= 200, "200 answers after the kill")
        victim.reload()
        state_after_kill = victim.status  # "exited": Docker leaves a killed container stopped
        around = load.since(killed)
        victim.start()  # `docker start`, as an operator would
        wait_replicas(Stack("web"), REPLICAS, timeout=120)
        revived = time.monotonic()
        revived_address = next(a for a, c in _replicas().items() if c.id == victim.id)
        _wait_for(
            lambda: sum(a.upstream == revived_address for a in load.since(revived)) >= 20,
            "20 answers from the revived replica",
        )
    during = Counter(a.upstream for a in around)
    after = Counter(a.upstream for a in load.since(revived))
    retried = sum(a.tried > 1 for a in load.answers)
    print(
        f"\n{len(load.answers)} answers, {len(load.failures)} failed "
        f"(bound {MAX_FAILED_ON_KILL}): {load.failures}; {retried} answered by a second replica "
        f"after nginx tried another; before the kill {dict(spread)}; after the kill of "
        f"{victim.name} ({victim_address}, then {state_after_kill}) {dict(during)}; after "
        f"`docker start` ({revived_address}) {dict(after)}; load average {_load_average()}"
    )
    assert len(load.failures) <= MAX_FAILED_ON_KILL, load.failures
    # A request sent after the kill cannot have been answered by the dead replica...
    assert victim_address not in during and len(during) == REPLICAS - 1
    # ...and once revived, it takes its share again.
    assert after[revived_address] >= 20


def test_a_refused_model_stops_the_roll_and_the_replicas_keep_serving(
    scaled: Scaled, tip_model_dir: Path
) -> None:
    link = next(
        Path(m["Source"]) / CURRENT
        for m in next(iter(_replicas().values())).attrs["Mounts"]
        if m["Destination"] == "/model"
    )
    before = os.readlink(link)
    with load_on("127.0.0.1", scaled.port) as load:
        _wait_for(lambda: len(load.answers) >= 30, "30 answers")
        # A tip model loads, but a web replica serves durations: the first replica refuses it.
        result = _deploy(["web", "reload", "--model", str(tip_model_dir)], scaled.cwd)
        answered = len(load.answers)
        _wait_for(lambda: len(load.answers) >= answered + 30, "30 answers after the refusal")
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: reload refused by ") and "0 of 3 replicas reloaded" in line
    assert f"still serves version {scaled.old}" in line
    assert load.failures == []
    assert {a.version for a in load.answers} == {scaled.old}
    assert os.readlink(link) == before  # a replica that starts now serves the old model too
    assert set(_status_versions(scaled.cwd).values()) == {f"healthy {scaled.old}"}


def test_a_roll_under_load_fails_nothing_and_no_replica_switches_back(
    scaled: Scaled, other_model_dir: Path
) -> None:
    new = load_model(other_model_dir).version
    assert new != scaled.old
    replicas = _replicas()
    with load_on("127.0.0.1", scaled.port) as load:
        _wait_for(
            lambda: len({a.upstream for a in load.answers}) == REPLICAS,
            "answers from every replica",
        )
        started = time.monotonic()
        out = _ok(_deploy(["web", "reload", "--model", str(other_model_dir)], scaled.cwd))
        took = time.monotonic() - started
        rolled = time.monotonic()
        _wait_for(
            lambda: {a.upstream for a in load.since(rolled) if a.version == new} == set(replicas),
            "answers from every replica with the new model",
        )
    assert f"rolled {REPLICAS} replicas one at a time: serving version {new}" in out
    assert load.failures == []
    answers = list(load.answers)
    assert answers[0].version == scaled.old and answers[-1].version == new
    for address in replicas:
        seen = [a.version for a in answers if a.upstream == address]
        switches = [(a, b) for a, b in itertools.pairwise(seen) if a != b]
        assert switches == [(scaled.old, new)], f"{address} answered {switches}"
    # One at a time, in order: each replica switched after the one before it, which had
    # switched while the next one still answered with the old model.
    order = sorted(replicas, key=lambda address: replica_number(replicas[address].name))
    first_new = [
        min(a.sent for a in answers if a.upstream == r and a.version == new) for r in order
    ]
    last_old = [max(a.sent for a in answers if a.upstream == r and a.version != new) for r in order]
    assert first_new == sorted(first_new), f"replicas switched out of order: {order}"
    assert all(last_old[k + 1] > first_new[k] for k in range(REPLICAS - 1))
    # Every answer to a request sent after the roll returned is the new model's.
    assert {a.version for a in load.since(rolled)} == {new}
    mixed = max(a.sent for a in answers if a.version == scaled.old) - min(
        a.sent for a in answers if a.version == new
    )
    print(
        f"\nroll of {REPLICAS} replicas under load: {len(answers)} answers, 0 failed; "
        f"`deploy web reload` took {took:.1f} s; old and new answered side by side for "
        f"{mixed:.1f} s (a rolling update); load average {_load_average()}"
    )
    assert set(_status_versions(scaled.cwd).values()) == {f"healthy {new}"}


def _top_pids(container: Any) -> set[str]:
    """Return the pids of a container's processes (an nginx reload forks a new worker)."""
    top = container.top()
    column = top["Titles"].index("PID")
    return {row[column] for row in top["Processes"]}


def test_the_balancer_finds_a_replica_that_comes_back_at_another_address(
    scaled: Scaled,
) -> None:
    """nginx re-resolves ``web`` through Docker's DNS: no restart, no reload, a new address.

    The replica leaves the stack's network, a placeholder container joins it (Docker hands out
    the lowest free address: the replica's), and the replica rejoins under its service alias
    at another address. Last in the module: the replica moves for good.
    """
    client = docker_client()
    replicas = _replicas()
    balancer = next(
        c
        for c in client.containers.list(
            filters={"label": f"{PROJECT_LABEL}={Stack('web').project}"}
        )
        if c.labels.get(SERVICE_LABEL) == "balancer"
    )
    started, pids = balancer.attrs["State"]["StartedAt"], _top_pids(balancer)
    old_address = sorted(replicas)[0]
    victim = replicas[old_address]
    (network_name,) = victim.attrs["NetworkSettings"]["Networks"]
    network = client.networks.get(network_name)
    placeholder = None
    try:
        with load_on("127.0.0.1", scaled.port) as load:
            _wait_for(
                lambda: {a.upstream for a in load.answers} == set(replicas),
                "answers from every replica",
            )
            network.disconnect(victim)
            placeholder = client.containers.run(
                victim.image.id,
                ["sleep", "600"],
                entrypoint=[],
                network=network_name,
                detach=True,
                labels={"deploy-modes.test": "placeholder"},
            )
            network.connect(victim, aliases=["web"])
            moved = time.monotonic()
            victim.reload()
            new_address = (
                f"{victim.attrs['NetworkSettings']['Networks'][network_name]['IPAddress']}:9696"
            )
            placeholder.reload()
            taken = placeholder.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"]
            assert new_address != old_address, "Docker gave the replica its old address back"
            _wait_for(
                lambda: sum(a.upstream == new_address for a in load.since(moved)) >= 20,
                f"20 answers from the replica at its new address {new_address}",
                timeout=60,
            )
        after = Counter(a.upstream for a in load.since(moved))
        print(
            f"\n{victim.name} moved from {old_address} to {new_address} (the placeholder took "
            f"{taken}); answers after the move {dict(after)}; {len(load.failures)} failed: "
            f"{load.failures}"
        )
        assert len(load.failures) <= MAX_FAILED_ON_KILL, load.failures
        balancer.reload()
        assert (
            balancer.attrs["State"]["StartedAt"] == started and balancer.attrs["RestartCount"] == 0
        )
        assert _top_pids(balancer) == pids, "the balancer was reloaded (its nginx worker changed)"
    finally:
        if placeholder is not None:
            placeholder.remove(force=True)
