"""``deploy stream``: the Kinesis consumer, its streams, and rides in and predictions out."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.markup import escape

from deploy_modes.cli.console import console, isatty, progress, typer_app
from deploy_modes.cli.options import (
    BakeOption,
    ModelOption,
    ModelSha256Option,
    RuntimeOption,
    ShardsOption,
    TrustPickleOption,
    TrustTypeOption,
    chosen_runtime,
    chosen_trust,
    model_location,
)
from deploy_modes.core.errors import DeployError
from deploy_modes.core.settings import load_settings
from deploy_modes.launch import stream as local
from deploy_modes.launch.stream import LOCAL_ENDPOINT, REAL_AWS

__all__ = ["app"]

app = typer_app(
    "Run the stream mode: Kinesis ride_events -> model -> ride_predictions.\n\n"
    "Example: deploy stream --runtime local --shards 2"
)


EndpointOption = Annotated[
    str | None,
    typer.Option(
        help="Kinesis endpoint, or 'aws' for real AWS (env DEPLOY_STREAM_ENDPOINT_URL, "
        f"KINESIS_ENDPOINT_URL or AWS_ENDPOINT_URL; default: {LOCAL_ENDPOINT}).",
        show_default=False,
    ),
]
ConsumerOption = Annotated[
    str | None,
    typer.Option(
        help="Consumer name; each name keeps its own checkpoints (fan-out) "
        "(env DEPLOY_STREAM_CONSUMER_NAME; default: default).",
        show_default=False,
    ),
]
OutputStreamOption = Annotated[
    str | None,
    typer.Option(
        help="Prediction stream, e.g. tip_predictions for a second model's consumer "
        "(env DEPLOY_STREAM_OUTPUT_STREAM; default: ride_predictions).",
        show_default=False,
    ),
]


def _settings(endpoint_url: str | None = None, **overrides: Any) -> Any:
    """Return the stream settings (env + explicit options); the endpoint defaults to local."""
    from deploy_modes.stream.settings import StreamSettings

    settings = load_settings(StreamSettings, endpoint_url=endpoint_url, **overrides)
    url = _endpoint(settings.endpoint_url or LOCAL_ENDPOINT)
    # An emulator accepts any keys, but boto3 signs nothing without some: when none are
    # configured, the clients built from these settings get the emulator's dummy keys.
    dummy = url is not None and not os.environ.get("AWS_ACCESS_KEY_ID")
    return settings.model_copy(update={"endpoint_url": url, "emulator_keys": dummy})


def _endpoint(url: str) -> str | None:
    """Return the endpoint for boto3 (None = real AWS), or a one-line error for a bad URL."""
    if url == REAL_AWS:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise DeployError(f"--endpoint-url must be http(s)://host:port or 'aws', got {url!r}")
    return url


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    shards: ShardsOption = None,
    consumer_name: ConsumerOption = None,
    endpoint_url: EndpointOption = None,
    model: ModelOption = None,
    count: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Demo rides to send once it runs (0: none).")
    ] = 0,
    consumers: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Consumer containers sharing the shards (--runtime compose; locally, run "
            "`deploy stream consume` in more terminals).",
        ),
    ] = 1,
    bake: BakeOption = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Start the emulator, create the streams, and run the consumer in the foreground.

    Example: deploy stream --runtime compose --shards 4 --consumers 2
    """
    if ctx.invoked_subcommand is not None:
        return
    from deploy_modes.compose.runtime import Runtime

    settings = _settings(shards=shards, consumer_name=consumer_name, endpoint_url=endpoint_url)
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    if chosen_runtime(runtime) is Runtime.compose:
        _up_in_compose(settings.shards, count, model, bake, trust, consumers)
        return
    if consumers != 1:
        raise DeployError(
            "--consumers scales the compose stack: locally, run `deploy stream consume` "
            "in more terminals (they share the shards)"
        )
    local.run_local(settings, model_location(model), count, trust)


@app.command("consume")
def consume(
    consumer_name: ConsumerOption = None,
    endpoint_url: EndpointOption = None,
    model: ModelOption = None,
    output_stream: OutputStreamOption = None,
    startup_timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=3600,
            help="Seconds to wait at start for Kinesis to answer before failing "
            "(env DEPLOY_STREAM_STARTUP_TIMEOUT; default: 30).",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        bool | None,
        typer.Option(
            "--group/--no-group",
            help="Share the shards with the other consumers of this name through leases; "
            "--no-group reads every shard alone (env DEPLOY_STREAM_GROUP; default: on).",
            show_default=False,
        ),
    ] = None,
    lease_timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=600,
            help="Seconds before an unrenewed lease is taken over (group) "
            "(env DEPLOY_STREAM_LEASE_TIMEOUT; default: 10).",
            show_default=False,
        ),
    ] = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Run only the consumer against the configured endpoint (what the container runs).

    Example: deploy stream consume --consumer-name analytics
    """
    from deploy_modes.core.settings import CoreSettings

    settings = _settings(
        consumer_name=consumer_name,
        endpoint_url=endpoint_url,
        output_stream=output_stream,
        startup_timeout=startup_timeout,
        group=group,
        lease_timeout=lease_timeout,
    )
    location = load_settings(CoreSettings, model_location=model).model_location
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    with local.recorded(settings):  # `deploy status` lists it, `deploy logs stream` reads it
        local.consume(location, settings, trust=trust)


@app.command("init")
def init(
    shards: ShardsOption = None,
    endpoint_url: EndpointOption = None,
    output_stream: OutputStreamOption = None,
) -> None:
    """Create the input, output and dead-letter streams and wait until they are ACTIVE.

    Example: deploy stream init --shards 4
    """
    settings = _settings(shards=shards, endpoint_url=endpoint_url, output_stream=output_stream)
    local.init_streams(settings)


@app.command("send")
def send(
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="Rides to send.")] = 1000,
    rate: Annotated[
        float, typer.Option(min=0, max=1_000_000, help="Rides per second (0: as fast as possible).")
    ] = 0,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="TLC parquet month to take rides from: a path, s3:// or http(s):// URL "
            "(default: generated).",
        ),
    ] = None,
    first_id: Annotated[int, typer.Option(help="ride_id of the first ride; then +1 each.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for generated rides.")] = 42,
    endpoint_url: EndpointOption = None,
) -> None:
    """Put rides on the input stream in PutRecords batches.

    Example: deploy stream send --count 5000 --rate 500
    """
    from deploy_modes.stream.rides import ride_source

    settings = _settings(endpoint_url=endpoint_url)
    total, rides = ride_source(count, seed, first_id, input_file)
    client = local.kinesis(settings)
    with local.aws_errors(settings):
        sent = _send(client, settings.input_stream, rides, rate or None, total)
    console.print(f"sent {sent:,} rides to {settings.input_stream}", highlight=False, markup=False)


def _send(client: Any, stream: str, rides: Iterable[Any], rate: float | None, total: int) -> int:
    """Send with a progress bar on a terminal, a few plain lines otherwise."""
    from deploy_modes.stream.rides import send_rides

    with progress(f"sending to {stream}", total) as advance:
        return send_rides(client, stream, rides, rate, lambda batch, _: advance(len(batch)))


@app.command("tail")
def tail(
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", "-f", help="Keep waiting for new events.")
    ] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    dead_letters: Annotated[
        bool, typer.Option("--dead-letters", help="Tail the dead-letter stream instead.")
    ] = False,
    latest: Annotated[
        bool, typer.Option("--latest", help="Only events that arrive from now on.")
    ] = False,
    endpoint_url: EndpointOption = None,
    output_stream: OutputStreamOption = None,
) -> None:
    """Print prediction events (one JSON line each) as they arrive.

    Example: deploy stream tail --no-follow --limit 10
    """
    from deploy_modes.stream.rides import follow_records

    settings = _settings(endpoint_url=endpoint_url, output_stream=output_stream)
    stream = settings.dlq_stream if dead_letters else settings.output_stream
    stop = threading.Event()
    shown = 0
    start = "LATEST" if latest else "TRIM_HORIZON"
    try:
        with local.aws_errors(settings):
            for data in follow_records(local.kinesis(settings), stream, start, follow, stop):
                typer.echo(data.decode("utf-8", errors="replace"))
                shown += 1
                if limit is not None and shown >= limit:
                    break
    except KeyboardInterrupt:
        pass
    if not isatty():
        return
    console.print(f"[dim]{shown:,} events from {escape(stream)}[/dim]")


def _up_in_compose(
    shards: int, count: int, model: str | None, bake: bool | None, trust: Any, consumers: int
) -> None:
    """Bring the stream stack up and say how to talk to it."""
    from deploy_modes.compose.stacks import StreamStack, up_stream

    options = StreamStack(
        shards=shards, count=count, model=model, bake=bake, trust=trust, consumers=consumers
    )
    stack, endpoint = up_stream(options)
    console.print(
        f"[bold green]stream stack up[/bold green] ({stack.project}): Kinesis at {endpoint}"
    )
    console.print(
        "  ride_events -> consumer -> ride_predictions (poison records: ride_events_dlq)\n"
        "next:\n"
        f"  deploy stream send --count 100 --endpoint-url {endpoint}\n"
        f"  deploy stream tail --endpoint-url {endpoint}\n"
        "  deploy status   (who holds which shard)      deploy logs stream -f      "
        "deploy down stream",
        highlight=False,
        markup=False,
    )
