"""The three lanes on Docker Compose: the same rides, counts and checks, other process control.

Only what differs from the local lanes is here. Web is the scaled web stack (one gunicorn
worker per replica behind nginx, so a "worker" more is a replica more, and a new model is the
stack's roll through ``deploy web reload``). Stream is the stream stack's emulator plus one
container per consumer, each a one-off of the stack's ``consumer`` service: each carries its
own model (a rollout starts new ones beside the old) and, like a local process, stays dead
once killed (no restart policy). Batch runs each job as a one-off of the batch stack's
``batch`` service, the run's folder mounted in. Container processes are seen from the host
through each container's PID (a native engine; in a VM the page shows no memory).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from deploy_modes.classroom.batch_lane import BatchLane
from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.processes import children
from deploy_modes.classroom.rides import RidePool
from deploy_modes.classroom.stream_lane import (
    CONSUMER_NAME,
    LEASE_TIMEOUT,
    SHARDS,
    STREAMS,
    StreamLane,
    held_shards,
)
from deploy_modes.classroom.web_lane import CLIENTS, WebLane
from deploy_modes.compare.compose import ContainerMemory
from deploy_modes.compare.memory import PeakMemory, tree_rss
from deploy_modes.compare.rides import RIDE_MONTH
from deploy_modes.compose.stack import PROJECT_LABEL, SERVICE_LABEL, Stack, docker_client
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import ManagedProcess, wait_http

__all__ = [
    "ComposeBatchLane",
    "ComposeStreamLane",
    "ComposeWebLane",
    "Consumer",
    "StagedModels",
]

RUN_DIR = "/rides"  # where a batch run's folder is mounted in its container
_APP_UID = 10001  # the images' user: it writes the run's output into the mounted folder
_UP_TIMEOUT = 180.0


class StagedModels:
    """A readable copy of each model the room deploys, to mount at ``/model`` (one per model)."""

    def __init__(self, trust: Trust) -> None:
        self.trust = trust
        self._env: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def env(self, location: str) -> dict[str, str]:
        """Return the compose variables that mount ``location`` (staged on first use)."""
        from deploy_modes.compose.model import stage_model

        with self._lock:
            if location not in self._env:
                # Its own folder per model: restaging one must not pull another from under a
                # container that still mounts it.
                key = f"classroom-{len(self._env) + 1}"
                self._env[location] = stage_model(key, location, self.trust)
            return self._env[location]


def _containers(client: Any, project: str, service: str | None = None) -> list[Any]:
    """Return the running containers of ``project`` (of one ``service`` if given)."""
    labels = [f"{PROJECT_LABEL}={project}"]
    if service:
        labels.append(f"{SERVICE_LABEL}={service}")
    with contextlib.suppress(Exception):  # a container going away mid-listing
        return list(client.containers.list(filters={"label": labels}))
    return []


def _host_pid(container: Any) -> int:
    return int(container.attrs.get("State", {}).get("Pid") or 0)


def _memory(containers: list[Any]) -> tuple[int, int]:
    """Return the summed RSS and process count of the containers' processes (host view)."""
    total = count = 0
    for container in containers:
        pid = _host_pid(container)
        if pid > 0:
            rss, n = tree_rss(pid)
            total, count = total + rss, count + n
    return total, count


def _inner_pid(host_pid: int) -> int:
    """Return a process's pid inside its container (the last NSpid of its status)."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise DeployError(f"process {host_pid} has no NSpid line: not in a container?")


# -- web ---------------------------------------------------------------------------------------


class ComposeWebLane(WebLane):
    """The scaled web stack on the lane's port: ``workers`` replicas of one gunicorn worker."""

    ADD_WORKER = "one more replica of one gunicorn worker (compose up --scale web=N+1)"
    SPREAD = "nginx finds the new replica through Docker's DNS and spreads the requests over them"
    RELOAD = (
        "rolled it through the replicas one at a time (deploy web reload): each loaded and "
        "proved it in its gunicorn master, forked a new worker and retired the old one"
    )

    def __init__(
        self,
        model: str,
        workers: int,
        log_dir: Path,
        clock: Callable[[], float],
        checker: Checker,
        trust: Trust,
    ) -> None:
        super().__init__(model, workers, log_dir, clock, checker)
        self.trust = trust
        self.stack: Stack | None = None
        self._docker = docker_client()

    def start(self) -> None:
        """Build and start the replicas and the balancer, wait for them, start the clients."""
        from deploy_modes.compose.stacks import WebStack, up_web

        options = WebStack(
            port=self.port, workers=1, model=self.model, trust=self.trust, replicas=self.workers
        )
        self.stack = up_web(options)
        wait_http(f"{self.url}/ready", timeout=_UP_TIMEOUT)
        self.start_clients()

    def _replicas(self) -> list[Any]:
        return _containers(self._docker, self.stack.project, "web") if self.stack else []

    def worker_pids(self) -> list[int]:
        """Return the host pids of every replica's gunicorn workers."""
        return [pid for c in self._replicas() for pid in children(_host_pid(c))]

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one gunicorn worker from inside its container: its master forks another."""
        for container in self._replicas():
            if pid in children(_host_pid(container)):
                code, output = container.exec_run(["sh", "-c", f"kill -9 {_inner_pid(pid)}"])
                if code != 0:
                    raise DeployError(f"kill in {container.name} failed: {output!r}")
                return
        raise DeployError(f"no replica runs a worker with pid {pid}")

    def add_worker(self) -> None:
        """Scale the stack by one replica (one more worker); nginx finds it through Docker's DNS."""
        assert self.stack is not None
        scale = ["--no-deps", "--no-recreate", "--scale", f"web={len(self._replicas()) + 1}"]
        if self.stack.run("up", "-d", "--no-build", *scale, "web", quiet=True) != 0:
            raise DeployError("scaling the web replicas failed (deploy logs web)")

    def running(self) -> bool:
        """Return whether the balancer and at least one replica run."""
        if self.stack is None:
            return False
        return bool(self._replicas()) and bool(
            _containers(self._docker, self.stack.project, "balancer")
        )

    def memory(self) -> tuple[int, int]:
        """Return the stack's containers' summed RSS and process count (balancer included)."""
        return _memory(_containers(self._docker, self.stack.project)) if self.stack else (0, 0)

    def detail(self, workers: int) -> str:
        """Return the lane's one-line description for the page."""
        replicas = len(self._replicas())
        return (
            f"{replicas} replicas behind nginx ({workers} gunicorn workers), "
            f"{CLIENTS} clients, port {self.port}"
        )

    def close(self) -> None:
        """Stop the clients, take the stack down."""
        super().close()
        if self.stack is not None:
            self.stack.down()
        self._docker.close()


# -- stream ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    """One consumer container of the group: its name and its number on the page."""

    name: str
    number: int


class ComposeStreamLane(StreamLane):
    """The stream stack's emulator; each consumer a one-off container of its consumer service."""

    AFTER_RESTART = (
        "The emulator container was restarted: moto keeps DynamoDB in memory too, so the "
        "consumers' leases and checkpoints went with the streams. The lane created the lease "
        "and checkpoint tables again (with the consumers' own classes), and the consumers, "
        "still running, found no checkpoint and read the new stream from its start"
    )

    def __init__(
        self,
        model: str,
        log_dir: Path,
        workdir: Path,
        clock: Callable[[], float],
        checker: Checker,
        models: StagedModels,
    ) -> None:
        super().__init__(model, log_dir, workdir, clock, checker)
        self.models = models
        self.stack: Stack | None = None
        self.consumers: list[Consumer] = []  # type: ignore[assignment]
        self._docker = docker_client()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _emulator(self) -> Any:
        assert self.stack is not None
        found = self._docker.containers.list(
            all=True,
            filters={
                "label": [f"{PROJECT_LABEL}={self.stack.project}", f"{SERVICE_LABEL}=emulator"]
            },
        )
        if not found:
            raise DeployError(f"{self.stack.project} has no emulator container")
        return found[0]

    def start_emulator(self) -> None:
        """Start the emulator (after a stop: the same container again); create the streams."""
        from deploy_modes.compose.stacks import build_stack, stack_env, up
        from deploy_modes.launch.emulator import emulator_client
        from deploy_modes.stream.kinesis import ensure_streams

        if self.stack is None:
            env = stack_env("stream", self.model, self.models.trust)
            # A fixed host port: the restarted emulator is where the producer and reader look.
            env.update(
                DEPLOY_COMPOSE_EMULATOR_PORT=str(self.port), DEPLOY_COMPOSE_SHARDS=str(SHARDS)
            )
            self.stack = build_stack("stream", env)
            up(self.stack, ["emulator"], ["emulator"])
        else:
            self._emulator().start()
            self.stack.wait_healthy(["emulator"], timeout=_UP_TIMEOUT)
        self._kinesis = emulator_client("kinesis", self.url)
        ensure_streams(self._kinesis, list(STREAMS), SHARDS, say=lambda _m: None)
        self._ensure_tables()
        self._positions = {}
        self.emulator_down.clear()

    def _ensure_tables(self) -> None:
        """Create the group's lease and checkpoint tables (the consumers' own classes do it).

        A consumer creates them when it starts; moto keeps DynamoDB in memory, so a restarted
        emulator has none, and running consumers would fail on the missing tables for ever.
        """
        from deploy_modes.launch.emulator import emulator_client
        from deploy_modes.stream.checkpoints import DynamoCheckpoints
        from deploy_modes.stream.leases import DynamoLeases
        from deploy_modes.stream.settings import StreamSettings

        names = StreamSettings(endpoint_url=None)
        dynamodb = emulator_client("dynamodb", self.url)
        DynamoCheckpoints(dynamodb, names.checkpoint_table)
        DynamoLeases(dynamodb, names.lease_table, CONSUMER_NAME, STREAMS[0])

    def stop_emulator(self) -> None:
        """Stop the emulator container (moto keeps streams, leases and checkpoints in memory)."""
        self.emulator_down.set()
        self._emulator().stop(timeout=10)

    def add_consumer(self, model: str | None = None) -> Consumer:  # type: ignore[override]
        """Start one more consumer container of the group, serving ``model``."""
        assert self.stack is not None
        self._consumer_count += 1
        n = self._consumer_count
        name = f"{self.stack.project}-classroom-consumer-{n}"
        streams = {
            "DEPLOY_STREAM_INPUT_STREAM": STREAMS[0],
            "DEPLOY_STREAM_OUTPUT_STREAM": STREAMS[1],
            "DEPLOY_STREAM_DLQ_STREAM": STREAMS[2],
            "DEPLOY_STREAM_POLL_INTERVAL": "0.1",
        }
        flags = [part for key, value in streams.items() for part in ("-e", f"{key}={value}")]
        command = ["deploy", "stream", "consume", "--consumer-name", CONSUMER_NAME]
        command += ["--lease-timeout", str(LEASE_TIMEOUT)]
        args = self.stack.args(
            "run", "-d", "--no-deps", "--name", name, *flags, "consumer", *command
        )
        env = {**os.environ, **self.stack.env, **self.models.env(model or self.model)}
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DeployError(f"starting consumer {n} failed: {done.stderr.strip()[-300:]}")
        container = self._docker.containers.get(name)
        # A one-off keeps the service's restart policy: a killed consumer must stay dead, as a
        # killed local process does, so the group (not Docker) has to take its shards over.
        container.update(restart_policy={"Name": "no"})
        consumer = Consumer(name, n)
        self.consumers.append(consumer)
        return consumer

    def live_consumers(self) -> list[Consumer]:  # type: ignore[override]
        """Return the consumers whose container runs."""
        if self.stack is None:
            return []
        running = {c.name for c in _containers(self._docker, self.stack.project, "consumer")}
        return [c for c in self.consumers if c.name in running]

    def kill_consumer(self, process: Consumer) -> None:  # type: ignore[override]
        """``docker kill`` (SIGKILL) one consumer: no checkpoint, no lease released."""
        container = self._docker.containers.get(process.name)
        container.kill()
        container.wait(timeout=10)

    def retire_consumer(self, process: Consumer) -> None:  # type: ignore[override]
        """``docker stop`` one consumer: SIGTERM, it checkpoints and releases its leases."""
        self._docker.containers.get(process.name).stop(timeout=30)

    def lease_owners(self) -> dict[str, int]:
        """Return which live consumer holds each shard, from its log since its container started."""
        owners: dict[str, int] = {}
        for consumer in self.live_consumers():
            with contextlib.suppress(Exception):  # gone since the listing
                container = self._docker.containers.get(consumer.name)
                started = container.attrs["State"]["StartedAt"]
                since = datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00")
                text = container.logs(since=since).decode(errors="replace")
                for shard in held_shards(text):
                    owners[shard] = consumer.number
        return owners

    def memory(self) -> tuple[int, int]:
        """Return the live consumers' and the emulator's summed RSS and process count."""
        if self.stack is None:
            return 0, 0
        live = {c.name for c in self.live_consumers()}
        found = _containers(self._docker, self.stack.project)
        return _memory(
            [c for c in found if c.name in live or c.labels.get(SERVICE_LABEL) == "emulator"]
        )

    def close(self) -> None:
        """Stop the threads; take the stack down (the consumer one-offs with it)."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for consumer in self.consumers:
            with contextlib.suppress(Exception):  # already gone
                self._docker.containers.get(consumer.name).remove(force=True)
        if self.stack is not None:
            self.stack.down()
        self._docker.close()


# -- batch -------------------------------------------------------------------------------------


class _RunProcess(ManagedProcess):
    """``docker compose run`` of one job; ``container`` is the name its container gets."""

    container: str = ""


class ComposeBatchLane(BatchLane):
    """Each run a one-off of the batch stack's job service, its folder mounted at /rides."""

    # The stack's own scheduler and worker containers would need the rides in its emulated S3:
    # the job starts its Dask cluster itself, in its container.
    DASK = "a Dask cluster of 2 worker processes inside the job's container"

    def __init__(
        self,
        model: str,
        pool: RidePool,
        interval: float,
        log_dir: Path,
        workdir: Path,
        clock: Callable[[], float],
        checker: Checker,
        models: StagedModels,
    ) -> None:
        super().__init__(model, pool, interval, log_dir, workdir, clock, checker)
        self.models = models
        self.stack: Stack | None = None
        self.engine_text = "one container"
        self._docker = docker_client()

    def start(self) -> None:
        """Build the batch image, then start the schedule."""
        from deploy_modes.compose.stacks import build_stack, stack_env

        self.stack = build_stack("batch", stack_env("batch", self.model, self.models.trust))
        super().start()

    def launch(self, number: int, source: Path, output: Path, log: Path) -> ManagedProcess:
        """Start the job's container on the run's folder."""
        assert self.stack is not None
        folder = source.parent
        # The job runs as the image's user and writes its output (staged, then renamed) here.
        if os.geteuid() == 0:
            os.chown(folder, _APP_UID, _APP_UID)
        else:
            folder.chmod(0o777)
        name = f"{self.stack.project}-classroom-{folder.name}"
        command = ["deploy", "batch", "--runtime", "local", "--month", RIDE_MONTH]
        command += ["--input", f"{RUN_DIR}/{source.name}", "--output", f"{RUN_DIR}/{output.name}"]
        command += ["--json", *self.engine]
        args = self.stack.args(
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--name",
            name,
            "-v",
            f"{folder}:{RUN_DIR}",
            "batch",
            *command,
        )
        env = {**self.stack.env, **self.models.env(self.model), "COLUMNS": "200"}
        process = _RunProcess(f"batch run {number}", args, env=env, log_path=log)
        process.container = name
        return process

    def peak(self, process: ManagedProcess) -> PeakMemory:
        """Sample the peak memory of the job's container."""
        assert self.stack is not None
        return ContainerMemory(self.stack.project, ("batch",))

    def kill(self, process: ManagedProcess) -> None:
        """``docker kill`` (SIGKILL) the job's container (once it exists)."""
        name = getattr(process, "container", "")
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                self._docker.containers.get(name).kill()
                return
            except Exception:  # not created yet (or already gone): look again
                time.sleep(0.1)
        process.kill()

    def memory(self, running: ManagedProcess) -> tuple[int, int]:
        """Return the running job container's summed RSS and process count."""
        return (
            _memory(_containers(self._docker, self.stack.project, "batch"))
            if self.stack
            else (0, 0)
        )

    def close(self) -> None:
        """Stop the schedule and a run in progress; take the stack down."""
        running = self.running
        if running is not None:
            self.kill(running)
        super().close()
        if self.stack is not None:
            self.stack.down()
        self._docker.close()
