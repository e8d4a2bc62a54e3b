"""Checkpoint stores: a real SQLite file and a DynamoDB table on the real moto server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator
from deploy_modes.stream.checkpoints import CheckpointStore, DynamoCheckpoints, SQLiteCheckpoints


def _exercise(store: CheckpointStore) -> None:
    assert store.get("default", "ride_events", "shard-0") is None
    store.save("default", "ride_events", "shard-0", "17")
    store.save("default", "ride_events", "shard-0", "42")
    store.save("analytics", "ride_events", "shard-0", "5")
    store.save("default", "other_stream", "shard-0", "9")
    assert store.get("default", "ride_events", "shard-0") == "42"
    assert store.get("analytics", "ride_events", "shard-0") == "5"
    assert store.get("default", "other_stream", "shard-0") == "9"
    assert store.get("default", "ride_events", "shard-1") is None


def test_sqlite_checkpoints_are_keyed_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "checkpoints.sqlite"
    store = SQLiteCheckpoints(path)
    _exercise(store)
    store.close()
    assert SQLiteCheckpoints(path).get("default", "ride_events", "shard-0") == "42"


def test_sqlite_checkpoint_path_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="cannot open the checkpoint file"):
        SQLiteCheckpoints(tmp_path)


@pytest.mark.integration
def test_dynamodb_checkpoints_against_the_emulator(moto_server: Emulator) -> None:
    client = aws_client("dynamodb", moto_server.url)
    table = f"checkpoints_{uuid.uuid4().hex[:8]}"
    _exercise(DynamoCheckpoints(client, table))
    # A second consumer process finds the table and the saved positions.
    assert DynamoCheckpoints(client, table).get("default", "ride_events", "shard-0") == "42"
