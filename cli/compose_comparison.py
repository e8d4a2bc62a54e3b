"""``deploy compare --runtime compose``: the same rides and measurements against the stacks.

Web and stream come up through :func:`deploy_modes.cli.runtime.compose_run`, as
``deploy web/stream --runtime compose`` brings them up. The batch stack generates its own
month, so here its emulator comes up first, the rides are put where its init step looks
(init keeps an existing object), and the job runs as ``docker compose run batch``.
Every stack is taken down in a ``finally``. Memory is the summed RSS of each container's
processes (seen from the host through the container's PID; 0 when the engine runs in a VM).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from deploy_modes.cli.comparison import (
    RIDE_MONTH,
    ModeResult,
    OutputReader,
    PeakMemory,
    ProgressFactory,
    RideSet,
    Say,
    WebClients,
    batch_result,
    batch_summary,
    collect_stream,
    send_and_collect,
    wait_for_probe,
)
from deploy_modes.cli.compose import PROJECT_LABEL, SERVICE_LABEL, Stack, docker_client
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import free_port, wait_http

__all__ = ["ContainerMemory", "run_compose"]

BUCKET = "deploy-modes"
INPUT_URI = f"s3://{BUCKET}/compare/green_tripdata_{RIDE_MONTH}.parquet"
OUTPUT_URI = f"s3://{BUCKET}/compare/predictions.parquet"
EMULATOR_PORT = 4566  # inside the stack
SAMPLE_EVERY = 0.25  # docker API calls are slower than /proc reads


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


def _refuse_running(stack: Stack) -> None:
    """Fail when the mode's stack already runs: its streams or port would mix in old data."""
    if stack.containers():
        raise DeployError(
            f"the {stack.mode} stack ({stack.project}) already exists: "
            f"take it down first with `deploy down {stack.mode}`"
        )


def _down(stack: Stack, say: Say) -> None:
    say(f"tearing {stack.project} down")
    stack.down()


def _web(rides: RideSet, model: str, say: Say, progress: ProgressFactory, options: Any) -> Any:
    from deploy_modes.cli.runtime import compose_run

    stack = Stack("web")
    _refuse_running(stack)
    port = free_port()
    memory = ContainerMemory(stack.project)
    try:
        started = time.perf_counter()
        compose_run("web", port=port, workers=options["workers"], model=model)
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=120)
        startup = time.perf_counter() - started
        clients = WebClients(port, rides, options["concurrency"])
        with progress(f"web (compose): POST /predict x{len(rides):,}", len(rides)) as advance:
            wall = clients.run(advance)
    finally:
        peak = memory.stop()
        _down(stack, say)
    return clients.result(
        startup,
        wall,
        peak,
        concurrency=options["concurrency"],
        workers=options["workers"] or 2,
    )


def _stream(rides: RideSet, model: str, say: Say, progress: ProgressFactory, options: Any) -> Any:
    from deploy_modes.cli.runtime import compose_run
    from deploy_modes.core.storage import aws_client
    from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS
    from deploy_modes.stream.settings import StreamSettings

    stack = Stack("stream")
    _refuse_running(stack)
    os.environ.update({k: v for k, v in EMULATOR_CREDENTIALS.items() if k not in os.environ})
    names = StreamSettings(endpoint_url=None)  # the stack's consumer uses the default names
    memory = ContainerMemory(stack.project, ("consumer",))
    try:
        started = time.perf_counter()
        compose_run("stream", shards=options["shards"], model=model)
        url = f"http://127.0.0.1:{stack.published_port('emulator', EMULATOR_PORT)}"
        kinesis = aws_client("kinesis", url)
        output = OutputReader(kinesis, names.output_stream)

        def dead() -> str | None:
            states = [s for s in stack.containers() if s.service == "consumer" and not s.oneoff]
            if states and all(s.status == "running" for s in states):
                return None
            return "the consumer container stopped (deploy logs stream shows why)"

        wait_for_probe(kinesis, names.input_stream, rides, output, dead)
        startup = time.perf_counter() - started
        wall = send_and_collect(kinesis, names.input_stream, rides, output, dead, progress)
        predictions, latencies, dead_letters = collect_stream(
            kinesis, names.input_stream, names.output_stream, names.dlq_stream
        )
    finally:
        peak = memory.stop()
        _down(stack, say)
    return ModeResult(
        mode="stream",
        rides=len(rides),
        startup_s=startup,
        wall_s=wall,
        latencies_s=latencies,
        peak_rss_bytes=peak,
        predictions=predictions,
        errors=[f"{dead_letters} rides went to the dead-letter stream"] if dead_letters else [],
        details={"shards": options["shards"], "dead_letters": dead_letters},
    )


def _batch(rides: RideSet, model: str, say: Say) -> ModeResult:
    import pyarrow.parquet as pq

    from deploy_modes.cli.runtime import _model_env, _stack, _up
    from deploy_modes.core.storage import aws_client, read_bytes, write_bytes
    from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS

    probe = Stack("batch")
    _refuse_running(probe)
    os.environ.update({k: v for k, v in EMULATOR_CREDENTIALS.items() if k not in os.environ})
    env = _model_env("batch", {"model": model})
    env.update(
        DEPLOY_COMPOSE_MONTH=RIDE_MONTH,
        DEPLOY_COMPOSE_ROWS=str(len(rides)),
        DEPLOY_COMPOSE_INPUT=INPUT_URI,
        DEPLOY_COMPOSE_OUTPUT_BUCKET=BUCKET,
        DEPLOY_COMPOSE_EMULATOR_PORT="",
    )
    stack = _stack("batch", {}, env)
    memory = ContainerMemory(stack.project, ("batch",))
    try:
        _up(stack, ["emulator"], ["emulator"])
        url = f"http://127.0.0.1:{stack.published_port('emulator', EMULATOR_PORT)}"
        s3 = aws_client("s3", url)
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
        say(f"batch (compose): the job on {len(rides):,} rides")
        started = time.perf_counter()
        text = stack.capture(
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "-e",
            f"DEPLOY_BATCH_OUTPUT={OUTPUT_URI}",
            "batch",
            "deploy",
            "batch",
            "--runtime=local",
            "--json",
        )
        total = time.perf_counter() - started
        summary = batch_summary(text)
        table = pq.read_table(
            _buffer(read_bytes(OUTPUT_URI, client=s3)), columns=["ride_id", "predicted_duration"]
        )
    finally:
        peak = memory.stop()
        _down(stack, say)
    return batch_result(len(rides), table, summary, total, peak, container_wall_s=total)


def _buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


def run_compose(
    rides: RideSet, model: str, say: Say, progress: ProgressFactory, **options: Any
) -> list[ModeResult]:
    """Run the three compose stacks one after the other on the rides; return their results."""
    if "://" in model:
        raise DeployError("the compose runtime mounts a local model: pass a local --model")
    for mode in ("batch", "web", "stream"):  # before building anything: fail fast
        _refuse_running(Stack(mode))
    say("compose runtime: each stack is built, brought up, measured and taken down in turn")
    return [
        _batch(rides, model, say),
        _web(rides, model, say, progress, options),
        _stream(rides, model, say, progress, options),
    ]
