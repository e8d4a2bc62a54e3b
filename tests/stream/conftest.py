"""Fixtures for the stream mode: fresh streams on the real moto server, settings, a service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import MakeConsumer

from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator
from deploy_modes.stream.checkpoints import SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import ensure_streams
from deploy_modes.stream.leases import LeaseCoordinator, SQLiteLeases
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings


@pytest.fixture
def stream_service(model_service: ModelService) -> StreamService:
    """Return the stream service over the session's real model."""
    return StreamService(model_service)


@pytest.fixture
def kinesis(moto_server: Emulator) -> Any:
    """Return a Kinesis client talking to the real moto server over HTTP."""
    return aws_client("kinesis", moto_server.url)


def _fresh_settings(moto_server: Emulator, tmp_path: Path, shards: int) -> StreamSettings:
    # Unique names per test: every test gets empty streams on the shared server.
    suffix = uuid.uuid4().hex[:8]
    return StreamSettings(
        input_stream=f"ride_events_{suffix}",
        output_stream=f"ride_predictions_{suffix}",
        dlq_stream=f"ride_events_dlq_{suffix}",
        shards=shards,
        endpoint_url=moto_server.url,
        checkpoint_path=tmp_path / "checkpoints.sqlite",
        poll_interval=0.05,
    )


@pytest.fixture
def make_streams(moto_server: Emulator, tmp_path: Path, kinesis: Any) -> Callable[..., Any]:
    """Return a factory creating fresh, ACTIVE input/output/DLQ streams and their settings."""

    def make(shards: int = 4) -> StreamSettings:
        settings = _fresh_settings(moto_server, tmp_path, shards)
        names = [settings.input_stream, settings.output_stream, settings.dlq_stream]
        ensure_streams(kinesis, names, shards, say=lambda message: None)
        return settings

    return make


@pytest.fixture
def streams(make_streams: Callable[..., StreamSettings]) -> StreamSettings:
    """Return settings naming fresh 4-shard streams on the moto server."""
    return make_streams(4)


@pytest.fixture
def make_consumer(stream_service: StreamService) -> Iterator[MakeConsumer]:
    """Return a function building an in-process consumer and the list its log lines go to."""
    stores: list[SQLiteCheckpoints] = []

    def make(settings: StreamSettings, owner: str | None = None) -> tuple[Consumer, list[str]]:
        lines: list[str] = []
        stores.append(SQLiteCheckpoints(settings.checkpoint_path))
        kinesis = aws_client("kinesis", settings.endpoint_url)
        leases = None
        if owner is not None:
            table = SQLiteLeases(settings.lease_file, settings.consumer_name, settings.input_stream)
            leases = LeaseCoordinator(table, owner, settings.lease_timeout, lines.append)
        consumer = Consumer(stream_service, kinesis, stores[-1], settings, lines.append, leases)
        return consumer, lines

    yield make
    for store in stores:
        store.close()
