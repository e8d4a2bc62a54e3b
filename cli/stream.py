"""``deploy stream``: the Kinesis consumer, its streams, and rides in and predictions out."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer

from deploy_modes.cli.console import console, isatty, progress, say, typer_app
from deploy_modes.cli.runtime import BakeOption
from deploy_modes.core.errors import DeployError

__all__ = ["app"]

app = typer_app(
    "Run the stream mode: Kinesis ride_events -> model -> ride_predictions.\n\n"
    "Example: deploy stream --runtime local --shards 2"
)

LOCAL_ENDPOINT = "http://127.0.0.1:4566"
REAL_AWS = "aws"  # --endpoint-url aws: real AWS endpoints and the usual credential chain
_ENDPOINT_VARS = ["DEPLOY_STREAM_ENDPOINT_URL", "KINESIS_ENDPOINT_URL", "AWS_ENDPOINT_URL"]
_LOOPBACK = {"127.0.0.1", "localhost"}

EndpointOption = Annotated[
    str,
    typer.Option(
        envvar=_ENDPOINT_VARS,
        help="Kinesis endpoint: the local emulator by default, or 'aws' for real AWS.",
    ),
]
ConsumerOption = Annotated[
    str,
    typer.Option(
        envvar="DEPLOY_STREAM_CONSUMER_NAME",
        help="Consumer name; each name keeps its own checkpoints (fan-out).",
    ),
]
ShardsOption = Annotated[
    int,
    typer.Option(min=1, max=64, envvar="DEPLOY_STREAM_SHARDS", help="Shards per created stream."),
]
RuntimeOption = Annotated[
    str, typer.Option(envvar="DEPLOY_RUNTIME", help="Where to run: auto, local or compose.")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        envvar="DEPLOY_MODEL_LOCATION", help="Model artifact dir, pickle, MLflow dir or s3:// URI."
    ),
]


def _endpoint(url: str) -> str | None:
    """Return the endpoint for boto3 (None = real AWS), with dummy credentials for emulators."""
    if url == REAL_AWS:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise DeployError(f"--endpoint-url must be http(s)://host:port or 'aws', got {url!r}")
    from deploy_modes.cli.emulator import EMULATOR_CREDENTIALS

    # An emulator accepts any credentials; without some, boto3 refuses to sign requests.
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ.update(EMULATOR_CREDENTIALS)
    return url


def _settings(**overrides: Any) -> Any:
    """Return the stream settings (env + explicit options) or one clear error line."""
    from pydantic import ValidationError

    from deploy_modes.stream.settings import StreamSettings

    try:
        return StreamSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DeployError(f"invalid stream setting {where}: {first['msg']}") from None


@contextlib.contextmanager
def _aws_errors(settings: Any) -> Iterator[None]:
    """Turn an unreachable endpoint or a refused call into one clear line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        where = settings.endpoint_url or "AWS"
        raise DeployError(f"Kinesis at {where}: {exc}") from None


def _client(settings: Any) -> Any:
    from deploy_modes.stream.bootstrap import kinesis_client

    return kinesis_client(settings)


def _init_streams(settings: Any) -> None:
    from deploy_modes.stream.kinesis import ensure_streams

    names = [settings.input_stream, settings.output_stream, settings.dlq_stream]
    try:
        ensure_streams(_client(settings), names, settings.shards, say)
    except DeployError:
        raise
    except Exception as exc:  # an endpoint that does not answer, bad credentials, ...
        raise DeployError(
            f"cannot reach Kinesis at {settings.endpoint_url or 'AWS'}: {exc}"
        ) from exc
    say(f"streams ready: {', '.join(names)}")


def _consume(model: str, settings: Any, announce: str | None = None, demo_rides: int = 0) -> None:
    """Build the consumer, take over SIGTERM/SIGINT, say ``announce``, run until stopped."""
    from deploy_modes.stream.bootstrap import build_consumer
    from deploy_modes.stream.consumer import stop_on_signals

    consumer = build_consumer(model, settings, say)
    stop = threading.Event()
    stop_on_signals(stop)  # from here a signal means: finish the batch, checkpoint, exit
    if announce:
        console.print(announce, highlight=False)
    consumer.start(stop)  # at most settings.startup_timeout, then one clear error
    if demo_rides:
        sender = threading.Thread(
            target=_send_demo_rides, args=(settings, demo_rides, stop), daemon=True
        )
        sender.start()
    consumer.run(stop)
    if consumer.failing:  # stopped during an outage: a supervisor must see it was not clean
        raise DeployError(f"stopped while failing: {consumer.failing}")


def _send_demo_rides(settings: Any, count: int, stop: threading.Event) -> None:
    """Put ``count`` generated rides while the consumer runs (``deploy stream --count``)."""
    from deploy_modes.stream.rides import ride_source, send_rides

    try:
        _, rides = ride_source(count)
        sent = send_rides(_client(settings), settings.input_stream, rides, stop=stop)
        say(f"sent {sent:,} demo rides to {settings.input_stream}")
    except DeployError as exc:  # the consumer keeps running; the user sees why
        say(f"could not send the demo rides: {exc}")


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    runtime: RuntimeOption = "auto",
    shards: ShardsOption = 2,
    consumer_name: ConsumerOption = "default",
    endpoint_url: EndpointOption = LOCAL_ENDPOINT,
    model: ModelOption = None,
    count: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Demo rides to send once it runs (0: none).")
    ] = 0,
    bake: BakeOption = False,
) -> None:
    """Start the emulator, create the streams, and run the consumer in the foreground.

    Example: deploy stream --runtime local --shards 2
    """
    if ctx.invoked_subcommand is not None:
        return
    from deploy_modes.cli.runtime import compose_run, resolve_runtime

    if resolve_runtime(runtime) == "compose":
        compose_run(
            "stream",
            shards=shards,
            consumer_name=consumer_name,
            endpoint_url=endpoint_url,
            count=count,
            model=model,
            bake=bake,
        )
        return
    from deploy_modes.cli.emulator import ensure_emulator
    from deploy_modes.core.demo import ensure_model
    from deploy_modes.core.settings import CoreSettings

    endpoint = _endpoint(endpoint_url)
    emulator = None
    parsed = urlparse(endpoint or "")
    if endpoint is not None and parsed.hostname in _LOOPBACK and parsed.port:
        emulator = ensure_emulator(host="127.0.0.1", port=parsed.port)
        say(
            f"AWS emulator {'started' if emulator.started_here else 'already running'} "
            f"at {emulator.url}"
        )
    try:
        settings = _settings(shards=shards, consumer_name=consumer_name, endpoint_url=endpoint)
        _init_streams(settings)
        location = model or ensure_model(CoreSettings(), say)
        aws_opt = f"--endpoint-url {endpoint} " if endpoint else ""
        opt = "" if endpoint_url == LOCAL_ENDPOINT else f" --endpoint-url {endpoint_url}"
        announce = (
            "\n[bold]stream mode running[/bold]: "
            f"{settings.input_stream} -> {settings.output_stream} "
            f"(dead letters: {settings.dlq_stream})\n"
            "next, in another terminal:\n"
            f"  deploy stream send --count 1000 --rate 200{opt}   # put rides\n"
            f"  deploy stream tail{opt}   # watch predictions\n"
            f"  aws {aws_opt}kinesis put-record --stream-name {settings.input_stream} "
            "--partition-key 256 --cli-binary-format raw-in-base64-out --data "
            '\'{"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, '
            '"ride_id": 256}\'\n'
            "stop with Ctrl-C: the batch in flight is finished and checkpointed.\n"
        )
        _consume(location, settings, announce, count)
    finally:
        if emulator is not None and emulator.started_here:
            say("stopping the AWS emulator we started (its streams go with it)")
            emulator.stop()


@app.command("consume")
def consume(
    consumer_name: ConsumerOption = "default",
    endpoint_url: EndpointOption = LOCAL_ENDPOINT,
    model: ModelOption = None,
    startup_timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=3600,
            envvar="DEPLOY_STREAM_STARTUP_TIMEOUT",
            help="Seconds to wait at start for Kinesis to answer before failing [default: 30].",
        ),
    ] = None,
    group: Annotated[
        bool | None,
        typer.Option(
            "--group/--no-group",
            envvar="DEPLOY_STREAM_GROUP",
            help="Share the shards with the other consumers of this name through leases.",
        ),
    ] = None,
    lease_timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=600,
            envvar="DEPLOY_STREAM_LEASE_TIMEOUT",
            help="Seconds before an unrenewed lease is taken over (--group) [default: 10].",
        ),
    ] = None,
) -> None:
    """Run only the consumer against the configured endpoint (what the container runs).

    Example: deploy stream consume --consumer-name analytics
    """
    from deploy_modes.core.settings import CoreSettings

    settings = _settings(
        consumer_name=consumer_name,
        endpoint_url=_endpoint(endpoint_url),
        startup_timeout=startup_timeout,
        group=group,
        lease_timeout=lease_timeout,
    )
    _consume(model or CoreSettings().model_location, settings)


@app.command("init")
def init(
    shards: ShardsOption = 2,
    endpoint_url: EndpointOption = LOCAL_ENDPOINT,
) -> None:
    """Create the input, output and dead-letter streams and wait until they are ACTIVE.

    Example: deploy stream init --shards 4
    """
    _init_streams(_settings(shards=shards, endpoint_url=_endpoint(endpoint_url)))


@app.command("send")
def send(
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Rides to send.")] = 1000,
    rate: Annotated[
        float, typer.Option(min=0, max=1_000_000, help="Rides per second (0: as fast as possible).")
    ] = 0,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="TLC parquet file to take rides from (default: generated)."),
    ] = None,
    first_id: Annotated[int, typer.Option(help="ride_id of the first ride; then +1 each.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for generated rides.")] = 42,
    endpoint_url: EndpointOption = LOCAL_ENDPOINT,
) -> None:
    """Put rides on the input stream in PutRecords batches.

    Example: deploy stream send --count 5000 --rate 500
    """
    from deploy_modes.stream.rides import ride_source

    settings = _settings(endpoint_url=_endpoint(endpoint_url))
    total, rides = ride_source(count, seed, first_id, input_file)
    client = _client(settings)
    with _aws_errors(settings):
        sent = _send(client, settings.input_stream, rides, rate or None, total)
    console.print(f"sent {sent:,} rides to {settings.input_stream}", highlight=False)


def _send(client: Any, stream: str, rides: Iterable[Any], rate: float | None, total: int) -> int:
    """Send with a progress bar on a terminal, a few plain lines otherwise."""
    from deploy_modes.stream.rides import send_rides

    with progress(f"sending to {stream}", total) as advance:
        return send_rides(client, stream, rides, rate, lambda batch, _: advance(len(batch)))


@app.command("tail")
def tail(
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep waiting for new events.")
    ] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    dead_letters: Annotated[
        bool, typer.Option("--dead-letters", help="Tail the dead-letter stream instead.")
    ] = False,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only events that arrive from now on.")
    ] = False,
    endpoint_url: EndpointOption = LOCAL_ENDPOINT,
) -> None:
    """Print prediction events (one JSON line each) as they arrive.

    Example: deploy stream tail --no-follow --limit 10
    """
    from deploy_modes.stream.rides import follow_records

    settings = _settings(endpoint_url=_endpoint(endpoint_url))
    stream = settings.dlq_stream if dead_letters else settings.output_stream
    stop = threading.Event()
    shown = 0
    start = "LATEST" if latest else "TRIM_HORIZON"
    try:
        with _aws_errors(settings):
            for data in follow_records(_client(settings), stream, start, follow, stop):
                typer.echo(data.decode("utf-8", errors="replace"))
                shown += 1
                if limit is not None and shown >= limit:
                    break
    except KeyboardInterrupt:
        pass
    if not isatty():
        return
    console.print(f"[dim]{shown:,} events from {stream}[/dim]")
