"""Bring a mode's compose stack up (or run the batch job in it): one typed options class each.

Every entry point builds the images, starts what the mode needs, waits until it is healthy
and, when anything fails (Ctrl-C too), prints the containers' logs and tears the stack down
before the error propagates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploy_modes.compose.model import stage_model
from deploy_modes.compose.settings import ComposeSettings
from deploy_modes.compose.stack import Stack, compose_command, docker_client
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import DEFAULT_EMULATOR_PORT, emulator_client
from deploy_modes.launch.terminal import say
from deploy_modes.web.settings import DEFAULT_PORT

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = [
    "BATCH_BUCKET",
    "BATCH_MONTH",
    "BATCH_OUTPUT",
    "BATCH_ROWS",
    "HEALTH_TIMEOUT",
    "MAX_CONSUMERS",
    "MAX_STACK_WORKERS",
    "SCHEDULER_PORT",
    "STACK_WORKERS",
    "BatchDone",
    "BatchStack",
    "StreamStack",
    "WebStack",
    "build_stack",
    "check_compose",
    "list_objects",
    "run_batch",
    "stack_env",
    "torn_down_on_failure",
    "up",
    "up_stream",
    "up_web",
]

BATCH_MONTH = "2021-03"
BATCH_ROWS = 20_000
BATCH_BUCKET = "deploy-modes"
BATCH_OUTPUT = (
    "s3://{bucket}/predictions/taxi_type={{taxi_type}}/year={{year:04d}}/"
    "month={{month:02d}}/{{model_version}}.parquet"
)
HEALTH_TIMEOUT = 180.0
STACK_WORKERS = 2  # worker containers of `--engine dask` without --workers (as locally)
MAX_STACK_WORKERS = 16
SCHEDULER_PORT = 8786  # inside the stack: tcp://scheduler:8786
MAX_CONSUMERS = 16  # more consumers than shards only wait for a lease
_LOOPBACK = (None, "127.0.0.1", "localhost")


@dataclass(frozen=True)
class WebStack:
    """Options of the web stack (``deploy web --runtime compose``)."""

    port: int = DEFAULT_PORT
    workers: int | None = None
    model: str | None = None
    bake: bool | None = None  # None: DEPLOY_COMPOSE_BAKE decides
    host: str | None = None
    trust: Trust | None = None  # None: the DEPLOY_TRUST_* environment reaches the containers
    replicas: int = 1  # more than one: that many web containers behind an nginx balancer

    def __post_init__(self) -> None:
        from deploy_modes.compose.settings import MAX_REPLICAS

        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise DeployError(f"--replicas must be 1..{MAX_REPLICAS}, got {self.replicas}")


@dataclass(frozen=True)
class BatchStack:
    """Options of the batch stack; it scores one month against the emulated S3."""

    month: str | None = None
    rows: int | None = None
    input: str | None = None
    output: str | None = None
    model: str | None = None
    bake: bool | None = None
    emulator_port: int | None = None
    trust: Trust | None = None
    # What the local runtime honours and this stack cannot: refused, never silently dropped.
    run_date: str | None = None
    first: str | None = None
    last: str | None = None
    window: str | None = None
    # --engine dask: a scheduler and ``workers`` worker containers next to the emulator.
    engine: str = "local"
    workers: int | None = None
    scheduler: str | None = None  # refused: the stack runs its own
    partition_rows: int | None = None  # rows per Dask task (None: the job's default)

    def __post_init__(self) -> None:
        from deploy_modes.core.tlc import parse_month

        if any((self.run_date, self.first, self.last, self.window)):
            raise DeployError(
                "the compose batch stack scores one --month: use --runtime local for "
                "--run-date, --from/--to and --window"
            )
        if self.scheduler:
            raise DeployError(
                "the compose batch stack runs its own Dask scheduler: drop --scheduler "
                "(or use --runtime local --scheduler to submit to an existing cluster)"
            )
        if self.engine != "dask" and self.workers is not None:
            raise DeployError("--workers needs --engine dask")
        if self.workers is not None and not 1 <= self.workers <= MAX_STACK_WORKERS:
            raise DeployError(f"--workers must be 1..{MAX_STACK_WORKERS}, got {self.workers}")
        parse_month(self.month or BATCH_MONTH)


@dataclass(frozen=True)
class StreamStack:
    """Options of the stream stack (emulator, streams, consumer, optional producer run)."""

    shards: int = 2
    count: int = 0
    model: str | None = None
    bake: bool | None = None
    emulator_port: int | None = None
    trust: Trust | None = None
    consumers: int = 1  # consumer containers of one group, sharing the shards through leases

    def __post_init__(self) -> None:
        if not 1 <= self.consumers <= MAX_CONSUMERS:
            raise DeployError(f"--consumers must be 1..{MAX_CONSUMERS}, got {self.consumers}")


@dataclass(frozen=True)
class BatchDone:
    """Where a batch stack run left its predictions (and its Dask scheduler, if any)."""

    prefix: str
    endpoint: str
    project: str
    scheduler: str | None = None  # tcp://127.0.0.1:PORT of the stack's Dask scheduler
    workers: int = 0


def check_compose() -> None:
    """Fail now when compose or the engine is missing: before training or building anything."""
    compose_command()
    docker_client().close()


def stack_env(mode: str, model: str | None, trust: Trust | None = None) -> dict[str, str]:
    """Return the stack env that names the model and, when given, the trust to load it with."""
    env = stage_model(mode, model, trust)
    if trust is not None:  # compose hands these to the containers that load the model
        env.update(trust.env())
    return env


def _bake(requested: bool | None) -> bool:
    return ComposeSettings().bake if requested is None else requested


def build_stack(
    mode: str, env: dict[str, str], bake: bool | None = None, file: Path | None = None
) -> Stack:
    """Build ``mode``'s images (and the baked variant with ``bake``); return the stack to run.

    ``file`` replaces the mode's compose file (the scaled web stack's, written by deploy).
    """
    from deploy_modes.compose.model import bake_file

    stack = Stack(mode, env=env, files=(file,) if file else ())
    if stack.run("build", label=f"building the {mode} images") != 0:
        raise DeployError(
            f"building the {mode} images failed (output above): check the network to the "
            "package index and the Dockerfile, then retry"
        )
    if _bake(bake):
        stack = Stack(mode, env=env, files=(bake_file(stack),))
        if stack.run("build", label=f"baking the model into the {mode} image") != 0:
            raise DeployError(f"baking the model into the {mode} image failed (output above)")
        say("model baked into the image (no mount)")
    return stack


@contextlib.contextmanager
def torn_down_on_failure(stack: Stack) -> Iterator[None]:
    """Print the logs and remove the stack when anything in the block fails (Ctrl-C too)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            stack.print_logs()
        say(f"tearing {stack.project} down")
        stack.down()
        raise


def up(stack: Stack, services: list[str], wait_for: list[str]) -> None:
    """``up -d`` the services and wait until they are healthy."""
    code = stack.run("up", "-d", "--no-build", *services, label=f"starting {stack.project}")
    if code != 0:
        raise DeployError(f"starting {stack.project} failed (output above)")
    say(f"waiting for {', '.join(wait_for)} to be healthy")
    stack.wait_healthy(wait_for, timeout=HEALTH_TIMEOUT)


def _free_or_ours(stack: Stack, port: int, service: str) -> None:
    """Fail clearly when ``port`` is taken by anything but this stack's own ``service``."""
    from deploy_modes.launch.processes import port_in_use

    if not port_in_use(port):
        return
    ours = any(
        s.service == service and f":{port}->" in s.ports for s in stack.containers() if s.healthy
    )
    if not ours:
        raise DeployError(
            f"port {port} is already taken: stop what listens there (deploy status shows our "
            "stacks) or pass another --port"
        )


def up_web(options: WebStack) -> Stack:
    """Bring the web stack up on ``127.0.0.1:port`` and wait until it is healthy."""
    check_compose()
    env = stack_env("web", options.model, options.trust)
    env["DEPLOY_COMPOSE_WEB_PORT"] = str(options.port)
    if options.workers:
        env["DEPLOY_COMPOSE_WEB_WORKERS"] = str(options.workers)
    if options.host not in _LOOPBACK:
        say("the compose stack publishes on 127.0.0.1 only")
    if options.replicas > 1:
        return _up_replicas(options, env)
    _free_or_ours(Stack("web", env=env), options.port, "web")
    stack = build_stack("web", env, options.bake)
    with torn_down_on_failure(stack):
        up(stack, ["web"], ["web"])
    return stack


def _up_replicas(options: WebStack, env: dict[str, str]) -> Stack:
    """Bring ``options.replicas`` web containers up behind the balancer on ``options.port``."""
    from deploy_modes.compose.replicas import (
        BALANCER,
        prune_models,
        replicas_file,
        stage_replica_model,
        wait_replicas,
    )

    _free_or_ours(Stack("web", env=env), options.port, BALANCER)
    env, key = stage_replica_model(env)
    stack = build_stack("web", env, options.bake, file=replicas_file())
    with torn_down_on_failure(stack):
        # Recreated: replicas left from an earlier run would keep the model they loaded then.
        scale = ["--force-recreate", "--scale", f"web={options.replicas}"]
        up(stack, [*scale, "web", BALANCER], [BALANCER])
        wait_replicas(stack, options.replicas, timeout=HEALTH_TIMEOUT)
    prune_models(Path(env["DEPLOY_COMPOSE_MODEL_DIR"]), key)
    say(f"{options.replicas} web replicas behind nginx (deploy status shows each one)")
    return stack


def _emulator_env(port: int | None) -> dict[str, str]:
    return {"DEPLOY_COMPOSE_EMULATOR_PORT": str(port) if port else ""}


def run_batch(options: BatchStack) -> BatchDone:
    """Prepare the emulated S3 and run the batch job for one month in the batch stack."""
    from deploy_modes.core.storage import is_s3, parse_s3
    from deploy_modes.core.tlc import month_file, parse_month

    check_compose()
    month = options.month or BATCH_MONTH
    given_input, given_output = options.input, options.output
    source = (
        given_input
        if given_input and is_s3(given_input)
        else f"s3://{BATCH_BUCKET}/input/{month_file(*parse_month(month))}"
    )
    target = (
        given_output
        if given_output and is_s3(given_output)
        else BATCH_OUTPUT.format(bucket=BATCH_BUCKET)
    )
    for given, used in ((given_input, source), (given_output, target)):
        if given and given != used:
            say(f"{given} is not in S3; in the compose stack the job uses {used}")
    env = stack_env("batch", options.model, options.trust)
    env.update(
        DEPLOY_COMPOSE_MONTH=month,
        DEPLOY_COMPOSE_ROWS=str(int(options.rows or BATCH_ROWS)),
        DEPLOY_COMPOSE_INPUT=source,
        DEPLOY_COMPOSE_OUTPUT_BUCKET=parse_s3(target).bucket,
        **_emulator_env(options.emulator_port),
    )
    stack = build_stack("batch", env, options.bake)
    with torn_down_on_failure(stack):
        up(stack, ["emulator"], ["emulator"])
        say(f"putting {month} into the emulated S3 at {source}")
        # --no-deps: the emulator is up; `run` would otherwise start (and re-run) dependencies
        if stack.run("run", "--rm", "--no-deps", "-T", "init", label="preparing S3") != 0:
            raise DeployError("preparing the emulated S3 failed (output above)")
        job_env = {"DEPLOY_BATCH_OUTPUT": target}
        workers = 0
        if options.engine == "dask":
            workers = options.workers or STACK_WORKERS
            _up_dask(stack, workers)
            job_env.update(
                DEPLOY_BATCH_ENGINE="dask",
                DEPLOY_DASK_SCHEDULER=f"tcp://scheduler:{SCHEDULER_PORT}",
            )
            if options.partition_rows:
                job_env["DEPLOY_BATCH_PARTITION_ROWS"] = str(int(options.partition_rows))
        on = f" on {workers} Dask worker containers" if workers else ""
        say(f"running the batch job for {month}{on}")
        flags = [part for key, value in job_env.items() for part in ("-e", f"{key}={value}")]
        job = ["run", "--rm", "--no-deps", "-T", *flags, "batch"]
        if stack.run(*job, label="scoring") != 0:
            raise DeployError("the batch job failed (its output is above)")
        port = stack.published_port("emulator", DEFAULT_EMULATOR_PORT)
        scheduler = (
            f"tcp://127.0.0.1:{stack.published_port('scheduler', SCHEDULER_PORT)}"
            if workers
            else None
        )
    prefix = target.split("{", 1)[0].rsplit("/", 1)[0] + "/"
    return BatchDone(
        prefix=prefix,
        endpoint=f"http://127.0.0.1:{port}",
        project=stack.project,
        scheduler=scheduler,
        workers=workers,
    )


def _up_dask(stack: Stack, workers: int) -> None:
    """Start the Dask scheduler and exactly ``workers`` worker containers; wait until they run."""
    scale = ["--scale", f"worker={workers}"]
    code = stack.run(
        "up", "-d", "--no-build", *scale, "scheduler", "worker", label="starting the Dask cluster"
    )
    if code != 0:
        raise DeployError("starting the Dask scheduler and workers failed (output above)")
    say(f"waiting for the Dask scheduler and {workers} workers")
    stack.wait_healthy(["scheduler"], timeout=HEALTH_TIMEOUT)
    _wait_workers(stack, workers, timeout=HEALTH_TIMEOUT)


def _wait_workers(stack: Stack, count: int, timeout: float) -> None:
    """Wait until ``count`` worker containers have run a few seconds unrestarted; fail fast."""
    import time

    from deploy_modes.compose.stack import SETTLE_SECONDS

    deadline = time.monotonic() + timeout
    since: float | None = None
    while True:
        workers = [s for s in stack.containers() if s.service == "worker" and not s.oneoff]
        broken = [s for s in workers if s.status in ("exited", "dead") or s.restarts]
        if broken:
            raise DeployError(
                f"the Dask worker container {broken[0].name} exited (code "
                f"{broken[0].exit_code}): see its logs above"
            )
        if len(workers) == count and all(s.status == "running" for s in workers):
            since = since or time.monotonic()
            if time.monotonic() - since >= SETTLE_SECONDS:
                return
        else:
            since = None
        if time.monotonic() > deadline:
            raise DeployError(
                f"{count} Dask worker containers not running within {timeout:.0f}s "
                f"({len(workers)} found): see the logs above"
            )
        time.sleep(0.5)


def list_objects(prefix: str, endpoint: str) -> list[tuple[str, int]]:
    """Return the ``(s3://uri, size)`` of the objects under ``prefix`` in the emulated S3."""
    from deploy_modes.core.storage import parse_s3

    location = parse_s3(prefix)
    listing = emulator_client("s3", endpoint).list_objects_v2(
        Bucket=location.bucket, Prefix=location.key
    )
    return [
        (f"s3://{location.bucket}/{item['Key']}", int(item["Size"]))
        for item in listing.get("Contents", [])
    ]


def _check_consumers(stack: Stack, wanted: int) -> None:
    """Fail unless ``wanted`` consumer containers run (the health wait sees one per service)."""
    running = [
        s for s in stack.containers() if s.service == "consumer" and not s.oneoff and s.healthy
    ]
    if len(running) != wanted:
        raise DeployError(f"{len(running)} of {wanted} consumer containers run: see the logs above")
    if wanted > 1:
        say(
            f"{wanted} consumers share the shards through leases "
            "(deploy status shows who holds which)"
        )


def up_stream(options: StreamStack) -> tuple[Stack, str]:
    """Bring the stream stack up (and send ``count`` rides); return it and its Kinesis URL."""
    check_compose()
    env = stack_env("stream", options.model, options.trust)
    env["DEPLOY_COMPOSE_SHARDS"] = str(int(options.shards))
    env.update(_emulator_env(options.emulator_port))
    stack = build_stack("stream", env, options.bake)
    with torn_down_on_failure(stack):
        # Scaled consumers share the shards through leases in the emulator's DynamoDB.
        scale = ["--scale", f"consumer={int(options.consumers)}"]
        up(stack, [*scale, "consumer"], ["emulator", "consumer"])
        _check_consumers(stack, int(options.consumers))
        if options.count:
            stack.env = {**env, "DEPLOY_COMPOSE_SEND_COUNT": str(int(options.count))}
            say(f"sending {int(options.count):,} rides with the producer")
            producer = ["run", "--rm", "--no-deps", "-T", "producer"]
            if stack.run(*producer, label="sending rides") != 0:
                raise DeployError("the producer failed (its output is above)")
        port = stack.published_port("emulator", DEFAULT_EMULATOR_PORT)
    return stack, f"http://127.0.0.1:{port}"
