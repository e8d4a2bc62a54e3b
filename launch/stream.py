"""Run the stream mode locally: create the streams, run the consumer in this process."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import DEFAULT_EMULATOR_PORT
from deploy_modes.launch.terminal import console, say

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = [
    "LOCAL_ENDPOINT",
    "REAL_AWS",
    "aws_errors",
    "consume",
    "init_streams",
    "kinesis",
    "recorded",
    "run_local",
]

LOCAL_ENDPOINT = f"http://127.0.0.1:{DEFAULT_EMULATOR_PORT}"
REAL_AWS = "aws"  # --endpoint-url aws: real AWS endpoints and the usual credential chain
_LOOPBACK = {"127.0.0.1", "localhost"}


@contextlib.contextmanager
def aws_errors(settings: Any) -> Iterator[None]:
    """Turn an unreachable endpoint or a refused call into one clear line."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        where = settings.endpoint_url or "AWS"
        raise DeployError(f"Kinesis at {where}: {exc}") from None


@contextlib.contextmanager
def recorded(settings: Any) -> Iterator[None]:
    """Record this consumer for ``deploy status``, with its output teed to a log file.

    The terminal still gets every line; ``deploy logs stream [-f]`` reads the same lines from
    the file, as it reads ``deploy web``'s. Off (``DEPLOY_STREAM_RECORD=0``): nothing is kept.
    """
    if not settings.record:
        yield
        return
    from deploy_modes.launch.logs import log_path, teed
    from deploy_modes.launch.registry import registered

    # One file per process: consumers of one group, each in its own terminal, stay apart.
    with teed(log_path("stream", os.getpid())) as log, registered("stream", None, log):
        yield


def kinesis(settings: Any) -> Any:
    """Return the Kinesis client the settings describe."""
    from deploy_modes.stream.bootstrap import kinesis_client

    return kinesis_client(settings)


def init_streams(settings: Any) -> None:
    """Create the input, output and dead-letter streams and wait until they are ACTIVE."""
    from deploy_modes.stream.kinesis import ensure_streams

    names = [settings.input_stream, settings.output_stream, settings.dlq_stream]
    try:
        ensure_streams(kinesis(settings), names, settings.shards, say)
    except DeployError:
        raise
    except Exception as exc:  # an endpoint that does not answer, bad credentials, ...
        raise DeployError(
            f"cannot reach Kinesis at {settings.endpoint_url or 'AWS'}: {exc}"
        ) from exc
    say(f"streams ready: {', '.join(names)}")


def consume(
    model: str,
    settings: Any,
    announce: str | None = None,
    demo_rides: int = 0,
    trust: Trust | None = None,
) -> None:
    """Build the consumer, take over SIGTERM/SIGINT, say ``announce``, run until stopped."""
    from deploy_modes.stream.bootstrap import build_consumer
    from deploy_modes.stream.consumer import stop_on_signals

    consumer = build_consumer(model, settings, say, trust)
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
        sent = send_rides(kinesis(settings), settings.input_stream, rides, stop=stop)
        say(f"sent {sent:,} demo rides to {settings.input_stream}")
    except DeployError as exc:  # the consumer keeps running; the user sees why
        say(f"could not send the demo rides: {exc}")


def run_local(settings: Any, location: str, count: int = 0, trust: Trust | None = None) -> None:
    """Start the emulator a loopback endpoint needs, create the streams, consume until stopped."""
    # From the first line: the log shows the emulator and the streams coming up too.
    with recorded(settings):
        _run_local(settings, location, count, trust)


def _run_local(settings: Any, location: str, count: int, trust: Trust | None) -> None:
    from urllib.parse import urlparse

    from deploy_modes.launch.emulator import ensure_emulator

    endpoint = settings.endpoint_url
    emulator = None
    parsed = urlparse(endpoint or "")
    if endpoint is not None and parsed.hostname in _LOOPBACK and parsed.port:
        emulator = ensure_emulator(host="127.0.0.1", port=parsed.port)
        say(
            f"AWS emulator {'started' if emulator.started_here else 'already running'} "
            f"at {emulator.url}"
        )
    try:
        init_streams(settings)
        aws_opt = f"--endpoint-url {endpoint} " if endpoint else ""
        shown = endpoint or REAL_AWS
        opt = "" if shown == LOCAL_ENDPOINT else f" --endpoint-url {shown}"
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
        consume(location, settings, announce, count, trust)
    finally:
        if emulator is not None and emulator.started_here:
            say("stopping the AWS emulator we started (its streams go with it)")
            emulator.stop()
