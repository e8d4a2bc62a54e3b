"""Checkpoint stores: a real SQLite file and a DynamoDB table on the real moto server."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator, ensure_emulator
from deploy_modes.launch.processes import free_port
from deploy_modes.stream.checkpoints import (
    Checkpoint,
    CheckpointStore,
    DynamoCheckpoints,
    SQLiteCheckpoints,
    resume_after,
)
from deploy_modes.stream.kinesis import Shard, client_config


def _cp(sequence: str) -> Checkpoint:
    return Checkpoint(sequence, "arn:aws:kinesis:eu-west-1:1:stream/ride_events@1.000", "1")


def _exercise(store: CheckpointStore) -> None:
    assert store.get("default", "ride_events", "shard-0") is None
    store.save("default", "ride_events", "shard-0", _cp("17"))
    store.save("default", "ride_events", "shard-0", _cp("42"))
    store.save("analytics", "ride_events", "shard-0", _cp("5"))
    store.save("default", "other_stream", "shard-0", Checkpoint("9", "other@2.000", "3"))
    assert store.get("default", "ride_events", "shard-0") == _cp("42")
    assert store.get("analytics", "ride_events", "shard-0") == _cp("5")
    assert store.get("default", "other_stream", "shard-0") == Checkpoint("9", "other@2.000", "3")
    assert store.get("default", "ride_events", "shard-1") is None


def test_sqlite_checkpoints_are_keyed_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "checkpoints.sqlite"  # two folders to make
    store = SQLiteCheckpoints(path)
    _exercise(store)
    store.close()
    assert SQLiteCheckpoints(path).get("default", "ride_events", "shard-0") == _cp("42")


def test_sqlite_checkpoints_are_read_from_another_thread(tmp_path: Path) -> None:
    # The CLI's status may read the file in a thread of the process that opened it.
    store = SQLiteCheckpoints(tmp_path / "checkpoints.sqlite")
    store.save("default", "ride_events", "shard-0", _cp("42"))
    seen: list[Checkpoint | None] = []
    reader = threading.Thread(
        target=lambda: seen.append(store.get("default", "ride_events", "shard-0"))
    )
    reader.start()
    reader.join()
    assert seen == [_cp("42")]
    store.close()


def test_a_checkpoint_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the folder should be")
    with pytest.raises(DeployError, match="cannot open the checkpoint file"):
        SQLiteCheckpoints(tmp_path / "taken" / "checkpoints.sqlite")


def test_sqlite_checkpoints_commit_to_a_write_ahead_log_and_close(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    store = SQLiteCheckpoints(path)
    store.save("default", "ride_events", "shard-0", _cp("42"))
    with sqlite3.connect(path) as other:  # WAL is a property of the file, seen by every reader
        assert other.execute("pragma journal_mode").fetchone() == ("wal",)
    other.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.get("default", "ride_events", "shard-0")


def test_a_checkpoint_cannot_be_changed_after_it_is_taken() -> None:
    checkpoint = _cp("42")
    with pytest.raises(dataclasses.FrozenInstanceError):
        checkpoint.sequence = "43"  # type: ignore[misc]
    assert {checkpoint: "ok"}[_cp("42")] == "ok"  # frozen, so it keys a dict


def test_sqlite_checkpoint_path_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="cannot open the checkpoint file"):
        SQLiteCheckpoints(tmp_path)


@pytest.mark.integration
def test_dynamodb_checkpoints_against_the_emulator(moto_server: Emulator) -> None:
    client = aws_client("dynamodb", moto_server.url)
    table = f"checkpoints_{uuid.uuid4().hex[:8]}"
    _exercise(DynamoCheckpoints(client, table))
    # A second consumer process finds the table and the saved positions.
    assert DynamoCheckpoints(client, table).get("default", "ride_events", "shard-0") == _cp("42")


def test_a_checkpoint_file_of_the_older_layout_is_migrated_and_not_trusted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the layout before checkpoints knew their stream
        db.execute(
            "create table checkpoints (consumer text not null, stream text not null, "
            "shard_id text not null, sequence text not null, "
            "updated_at text not null default current_timestamp, "
            "primary key (consumer, stream, shard_id))"
        )
        db.execute("insert into checkpoints values ('default', 's', 'shard-0', '42', 'now')")
    db.close()
    old = SQLiteCheckpoints(path).get("default", "s", "shard-0")
    assert old == Checkpoint("42", "", "")
    after, why = resume_after(old, "arn@1.000", Shard("shard-0", "1"))
    assert after is None
    assert why is not None and "older version" in why


_NOW = "arn:aws:kinesis:eu-west-1:1:stream/s@200.000"


@pytest.mark.parametrize(
    ("checkpoint", "shard", "after", "why"),
    [
        (None, Shard("s-0", "1"), None, None),
        (Checkpoint("42", _NOW, "1"), Shard("s-0", "1"), "42", None),
        (Checkpoint("1", _NOW, "1"), Shard("s-0", "1"), "1", None),  # the first record
        (Checkpoint("9", _NOW, "1"), Shard("s-0", "1", "9"), "9", None),  # closed, fully read
        (Checkpoint("5", _NOW, "1"), Shard("s-0", "1", "9"), "5", None),  # closed, half read
        (
            Checkpoint("42", _NOW.replace("200.000", "100.000"), "1"),
            Shard("s-0", "1"),
            None,
            "earlier incarnation",
        ),
        (  # an earlier creation time whose text sorts after the current one
            Checkpoint("42", _NOW.replace("200.000", "90.000"), "1"),
            Shard("s-0", "1"),
            None,
            "earlier incarnation",
        ),
        (Checkpoint("42", _NOW, "7"), Shard("s-0", "1"), None, "starting at 7"),
        (Checkpoint("42", _NOW, "1"), Shard("s-0", "7"), None, "starting at 1"),
        (Checkpoint("42", _NOW, "50"), Shard("s-0", "50"), None, "outside"),  # below the start
        (Checkpoint("42", _NOW, "1"), Shard("s-0", "1", "30"), None, "outside"),  # past the end
        (Checkpoint("x", _NOW, "1"), Shard("s-0", "1"), None, "outside"),
    ],
)
def test_a_checkpoint_is_used_only_on_its_own_stream_incarnation_and_shard_range(
    checkpoint: Checkpoint | None, shard: Shard, after: str | None, why: str | None
) -> None:
    resumed, reason = resume_after(checkpoint, _NOW, shard)
    assert resumed == after
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason and "checkpoint" in reason


class Wire:
    """Record the DynamoDB calls a real client makes to moto; answer CREATING a few times.

    Moto makes every table ACTIVE at once and has no eventual consistency, so what AWS does
    (a new table stays CREATING for seconds; reads may be stale unless consistent) is
    observed on the wire: the first ``creating`` DescribeTable answers from moto get their
    TableStatus rewritten to CREATING, and every call's parameters are kept.
    """

    def __init__(self, client: Any, creating: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.creating = creating
        client.meta.events.register("provide-client-params.dynamodb.*", self._params)
        client.meta.events.register("after-call.dynamodb.DescribeTable", self._describe)

    def _params(self, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def _describe(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        if self.creating and "Table" in parsed:
            self.creating -= 1
            parsed["Table"]["TableStatus"] = "CREATING"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.mark.integration
def test_dynamodb_store_waits_while_the_table_is_creating(moto_server: Emulator) -> None:
    client = aws_client("dynamodb", moto_server.url)
    wire = Wire(client, creating=2)
    started = time.monotonic()
    store = DynamoCheckpoints(client, f"checkpoints_{uuid.uuid4().hex[:8]}")
    # A second between looks, as AWS asks of pollers: two CREATING answers cost two seconds.
    assert time.monotonic() - started >= 2.0
    assert store.get("c", "s", "shard-0") is None
    names = wire.names()
    assert names[0] == "CreateTable"
    first_read = names.index("GetItem")
    # Two CREATING answers, then ACTIVE: at least three looks before the first read.
    assert names[1:first_read].count("DescribeTable") >= 3
    assert wire.creating == 0


@pytest.mark.integration
def test_dynamodb_reads_are_consistent(moto_server: Emulator) -> None:
    client = aws_client("dynamodb", moto_server.url)
    store = DynamoCheckpoints(client, f"checkpoints_{uuid.uuid4().hex[:8]}")
    wire = Wire(client)
    store.save("c", "s", "shard-0", _cp("5"))
    assert store.get("c", "s", "shard-0") == _cp("5")
    reads = [params for name, params in wire.calls if name == "GetItem"]
    assert reads and all(params.get("ConsistentRead") is True for params in reads)


@pytest.mark.integration
def test_a_checkpoint_table_that_cannot_be_created_is_a_clear_error(
    moto_server: Emulator,
) -> None:
    # Moto accepts any table name, so the create is made to fail where nothing listens.
    nowhere = aws_client("dynamodb", f"http://127.0.0.1:{free_port()}", config=client_config())
    with pytest.raises(DeployError, match="cannot create checkpoint table 'cp': Could not connect"):
        DynamoCheckpoints(nowhere, "cp")
    client = aws_client("dynamodb", moto_server.url)
    other = f"other_{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=other,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(DeployError, match="is not a checkpoint table"):
        DynamoCheckpoints(client, other)  # exists, but someone else's


@pytest.mark.integration
def test_a_checkpoint_table_lost_while_creating_is_a_clear_error(tmp_path: Path) -> None:
    # A private moto server, stopped right after it accepts the CreateTable: the wait's
    # DescribeTable then finds nothing listening, as when AWS becomes unreachable.
    emulator = ensure_emulator(port=free_port(), log_dir=tmp_path)
    try:
        client = aws_client("dynamodb", emulator.url, config=client_config())
        client.meta.events.register(
            "after-call.dynamodb.CreateTable", lambda **_kwargs: emulator.stop()
        )
        with pytest.raises(DeployError, match="did not become ACTIVE: Could not connect"):
            DynamoCheckpoints(client, "cp")
    finally:
        emulator.stop()
