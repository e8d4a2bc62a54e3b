"""The modes measured in their compose stacks: same rides, same figures, one stack at a time.

Web and stream come up as ``deploy web/stream --runtime compose`` brings them up. The batch
stack generates its own month, so here its emulator comes up first, the rides are put where
its init step looks (init keeps an existing object), and the job runs as ``docker compose
run batch``. Every stack is taken down in a ``finally``. Memory is the summed RSS of each
container's processes (seen from the host through the container's PID; 0 when the engine
runs in a VM).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_modes.compare.batch import batch_result, batch_summary
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.result import ModeResult, ProgressFactory, Say
from deploy_modes.compare.rides import RIDE_MONTH, RideSet
from deploy_modes.compare.stream import (
    OutputReader,
    send_and_collect,
    stream_result,
    wait_for_probe,
)
from deploy_modes.compare.web import WebClients
from deploy_modes.compose.stack import PROJECT_LABEL, SERVICE_LABEL, Stack, docker_client
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import DEFAULT_EMULATOR_PORT, emulator_client
from deploy_modes.launch.processes import free_port, wait_http

__all__ = [
    "ComposeBatch",
    "ComposeStream",
    "ComposeWeb",
    "ContainerMemory",
    "refuse_running",
]

BUCKET = "deploy-modes"
INPUT_URI = f"s3://{BUCKET}/compare/green_tripdata_{RIDE_MONTH}.parquet"
OUTPUT_URI = f"s3://{BUCKET}/compare/predictions.parquet"
SAMPLE_EVERY = 0.25  # docker API calls are slower than /proc reads
DEFAULT_STACK_WORKERS = 2  # what compose/web.yml runs when no worker count is given


class ContainerMemory(PeakMemory):
    """Sample the summed RSS of a compose project's containers (optionally some services)."""

    every = SAMPLE_EVERY

    def __init__(self, project: str, services: tuple[str, ...] = ()) -> None:
        self.project = project
        self.services = services
        self._client = docker_client()
        super().__init__(name=project)

    def root_pids(self) -> list[int]:
        """Return the host PIDs of the project's running containers."""
        pids: list[int] = []
        with contextlib.suppress(Exception):  # a container going away mid-listing
            found = self._client.containers.list(
                filters={"label": f"{PROJECT_LABEL}={self.project}"}
            )
            for container in found:
                if self.services and container.labels.get(SERVICE_LABEL) not in self.services:
                    continue
                pid = int(container.attrs.get("State", {}).get("Pid") or 0)
                if pid > 0:
                    pids.append(pid)
        return pids

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        peak = super().stop()
        with contextlib.suppress(Exception):
            self._client.close()
        return peak


def refuse_running(mode: str) -> None:
    """Fail when the mode's stack already runs: its streams or port would mix in old data."""
    stack = Stack(mode)
    if stack.containers():
        raise DeployError(
            f"the {stack.mode} stack ({stack.project}) already exists: "
            f"take it down first with `deploy down {stack.mode}`"
        )


def _down(stack: Stack, say: Say) -> None:
    say(f"tearing {stack.project} down")
    stack.down()


@dataclass
class ComposeWeb:
    """The web stack on a free port, every ride POSTed by concurrent clients."""

    model: str
    say: Say
    progress: ProgressFactory
    concurrency: int = 8
    workers: int | None = None
    mode: str = "web"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the stack

    def run(self, rides: RideSet) -> ModeResult:
        """Bring the stack up, send, measure, take it down."""
        from deploy_modes.compose.stacks import WebStack, up_web

        refuse_running("web")
        stack = Stack("web")
        port = free_port()
        memory = ContainerMemory(stack.project)
        try:
            started = time.perf_counter()
            up_web(WebStack(port=port, workers=self.workers, model=self.model, trust=self.trust))
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=120)
            startup = time.perf_counter() - started
            clients = WebClients(port, rides, self.concurrency)
            label = f"web (compose): POST /predict x{len(rides):,}"
            with self.progress(label, len(rides)) as advance:
                wall = clients.run(advance)
        finally:
            peak = memory.stop()
            _down(stack, self.say)
        return clients.result(
            startup,
            wall,
            peak,
            concurrency=self.concurrency,
            workers=self.workers or DEFAULT_STACK_WORKERS,
        )


@dataclass
class ComposeStream:
    """The stream stack: rides put on its emulator, predictions read back from it."""

    model: str
    say: Say
    progress: ProgressFactory
    shards: int = 2
    mode: str = "stream"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the stack

    def run(self, rides: RideSet) -> ModeResult:
        """Bring the stack up, send, measure, take it down."""
        from deploy_modes.compose.stacks import StreamStack, up_stream
        from deploy_modes.stream.settings import StreamSettings

        refuse_running("stream")
        stack = Stack("stream")
        names = StreamSettings(endpoint_url=None)  # the stack's consumer uses the default names
        memory = ContainerMemory(stack.project, ("consumer",))
        try:
            started = time.perf_counter()
            _, url = up_stream(StreamStack(shards=self.shards, model=self.model, trust=self.trust))
            kinesis = emulator_client("kinesis", url)
            output = OutputReader(kinesis, names.output_stream)

            def dead() -> str | None:
                states = [s for s in stack.containers() if s.service == "consumer" and not s.oneoff]
                if states and all(s.status == "running" for s in states):
                    return None
                return "the consumer container stopped (deploy logs stream shows why)"

            wait_for_probe(kinesis, names.input_stream, rides, output, dead)
            startup = time.perf_counter() - started
            wall = send_and_collect(kinesis, names.input_stream, rides, output, dead, self.progress)
            streams = (names.input_stream, names.output_stream, names.dlq_stream)
            result = stream_result(kinesis, streams, rides, startup, wall, 0, self.shards)
        finally:
            peak = memory.stop()
            _down(stack, self.say)
        result.peak_rss_bytes = peak
        return result


@dataclass
class ComposeBatch:
    """The batch stack's job on the rides, put where its init step looks for the month."""

    model: str
    say: Say
    mode: str = "batch"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the stack

    def run(self, rides: RideSet) -> ModeResult:
        """Bring the emulator up, put the rides, run the job, read its predictions back."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from deploy_modes.compose.stacks import build_stack, stack_env, up
        from deploy_modes.core.storage import read_bytes, write_bytes

        refuse_running("batch")
        env = stack_env("batch", self.model, self.trust)
        env.update(
            DEPLOY_COMPOSE_MONTH=RIDE_MONTH,
            DEPLOY_COMPOSE_ROWS=str(len(rides)),
            DEPLOY_COMPOSE_INPUT=INPUT_URI,
            DEPLOY_COMPOSE_OUTPUT_BUCKET=BUCKET,
            DEPLOY_COMPOSE_EMULATOR_PORT="",
        )
        stack = build_stack("batch", env)
        memory = ContainerMemory(stack.project, ("batch",))
        try:
            up(stack, ["emulator"], ["emulator"])
            url = f"http://127.0.0.1:{stack.published_port('emulator', DEFAULT_EMULATOR_PORT)}"
            s3 = emulator_client("s3", url)
            with contextlib.suppress(Exception):  # already there
                s3.create_bucket(
                    Bucket=BUCKET,
                    CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name},
                )
            write_bytes(INPUT_URI, Path(rides.path).read_bytes(), client=s3)
            # --no-deps: the emulator is up; `run` would otherwise start (and re-run) dependencies
            init = ["run", "--rm", "--no-deps", "-T", "init"]
            if stack.run(*init, label="preparing S3", quiet=True) != 0:
                raise DeployError("preparing the emulated S3 failed (deploy logs batch)")
            self.say(f"batch (compose): the job on {len(rides):,} rides")
            started = time.perf_counter()
            text = stack.capture(
                *("run", "--rm", "--no-deps", "-T", "-e", f"DEPLOY_BATCH_OUTPUT={OUTPUT_URI}"),
                *("batch", "deploy", "batch", "--runtime=local", "--json"),
            )
            total = time.perf_counter() - started
            summary = batch_summary(text)
            data: Any = pa.BufferReader(read_bytes(OUTPUT_URI, client=s3))
            table = pq.read_table(data, columns=["ride_id", "predicted_duration"])
        finally:
            peak = memory.stop()
            _down(stack, self.say)
        return batch_result(len(rides), table, summary, total, peak, container_wall_s=total)
