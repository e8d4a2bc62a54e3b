"""Wire the real objects: model -> stream service -> Kinesis client -> checkpoints -> consumer."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from deploy_modes.core.artifact import Trust, load_model
from deploy_modes.core.naming import EVENT_FIELDS
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client, emulator_keys
from deploy_modes.stream.checkpoints import CheckpointStore, DynamoCheckpoints, SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import client_config
from deploy_modes.stream.leases import DynamoLeases, LeaseCoordinator, LeaseTable, SQLiteLeases
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings

__all__ = [
    "build_consumer",
    "checkpoint_store",
    "kinesis_client",
    "lease_coordinator",
    "stream_service",
]


def _client(service: str, settings: StreamSettings) -> Any:
    """Return a client of ``service`` at the configured endpoint (botocore ``standard`` retries)."""
    keys = emulator_keys() if settings.emulator_keys else {}
    return aws_client(service, settings.endpoint_url, config=client_config(), **keys)


def kinesis_client(settings: StreamSettings) -> Any:
    """Return a Kinesis client for the configured endpoint (botocore ``standard`` retries)."""
    return _client("kinesis", settings)


def stream_service(
    model_location: str, settings: StreamSettings, trust: Trust | None = None
) -> StreamService:
    """Load the model once (``trust``: default the environment's) and return the service."""
    service = ModelService(load_model(model_location, trust), EVENT_FIELDS)
    return StreamService(service, settings.max_record_bytes)


def checkpoint_store(settings: StreamSettings) -> CheckpointStore:
    """Return the configured checkpoint store (SQLite file or DynamoDB table)."""
    if settings.checkpoint_store == "dynamodb":
        return DynamoCheckpoints(
            _client("dynamodb", settings),
            settings.checkpoint_table,
        )
    return SQLiteCheckpoints(settings.checkpoint_path)


def lease_coordinator(
    settings: StreamSettings, log: Callable[[str], None] | None = None
) -> LeaseCoordinator:
    """Return this process's lease holder in the group named by the consumer name."""
    table: LeaseTable
    group, stream = settings.consumer_name, settings.input_stream
    if settings.checkpoint_store == "dynamodb":
        client = _client("dynamodb", settings)
        table = DynamoLeases(client, settings.lease_table, group, stream)
    else:
        table = SQLiteLeases(settings.lease_file, group, stream)
    me = f"{socket.gethostname()}-{os.getpid()}"
    say = log or (lambda message: None)
    return LeaseCoordinator(
        table, me, settings.lease_timeout, lambda message: say(f"consumer {me}: {message}")
    )


def build_consumer(
    model_location: str,
    settings: StreamSettings,
    log: Callable[[str], None] | None = None,
    trust: Trust | None = None,
) -> Consumer:
    """Build the consumer the CLI and the container run."""
    return Consumer(
        stream_service(model_location, settings, trust),
        kinesis_client(settings),
        checkpoint_store(settings),
        settings,
        log,
        lease_coordinator(settings, log) if settings.group else None,
    )
