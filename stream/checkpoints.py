"""Durable shard checkpoints bound to the stream incarnation they belong to: SQLite or DynamoDB.

A checkpoint is keyed by (consumer name, stream name, shard) and remembers which incarnation
of the stream it was taken on (ARN + creation time) and the shard's starting sequence number.
A stream deleted and created again, or an emulator restarted with fresh state, has the same
names but sequence numbers that start over; resuming "after" an old checkpoint there would
skip every new ride, so :func:`resume_after` refuses it and says why.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import aws_error_code
from deploy_modes.stream.kinesis import Shard
from deploy_modes.stream.leases import fast_commits

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "DynamoCheckpoints",
    "SQLiteCheckpoints",
    "resume_after",
]

_KEY_SEPARATOR = "|"
# Columns added after the first release; an older file gets them with empty values.
_ADDED_COLUMNS = ("stream_incarnation", "shard_start")


@dataclass(frozen=True)
class Checkpoint:
    """The last acknowledged sequence number of a shard, and what it belongs to."""

    sequence: str
    stream_incarnation: str = ""
    shard_start: str = ""


def _in_range(sequence: str, shard: Shard) -> bool:
    try:
        number = int(sequence)
        start = int(shard.starting_sequence) if shard.starting_sequence else None
        end = int(shard.ending_sequence) if shard.ending_sequence is not None else None
    except ValueError:
        return False
    return (start is None or number >= start) and (end is None or number <= end)


def resume_after(
    checkpoint: Checkpoint | None, incarnation: str, shard: Shard
) -> tuple[str | None, str | None]:
    """Return (sequence to resume after or None, why the checkpoint was not used or None).

    ``None, None`` is a shard never checkpointed; ``None, why`` means read the shard from
    TRIM_HORIZON because the checkpoint belongs to something else.
    """
    if checkpoint is None:
        return None, None
    if not checkpoint.stream_incarnation:
        why = "has no stream incarnation (written by an older version)"
    elif checkpoint.stream_incarnation != incarnation:
        why = f"belongs to an earlier incarnation of the stream ({checkpoint.stream_incarnation})"
    elif checkpoint.shard_start != shard.starting_sequence:
        why = (
            f"was taken on a shard starting at {checkpoint.shard_start}, "
            f"this one starts at {shard.starting_sequence}"
        )
    elif not _in_range(checkpoint.sequence, shard):
        why = "lies outside the shard's sequence number range"
    else:
        return checkpoint.sequence, None
    return None, f"checkpoint {checkpoint.sequence} {why}"


class CheckpointStore(Protocol):
    """Where a consumer remembers the last acknowledged sequence number of each shard."""

    def get(self, consumer: str, stream: str, shard_id: str) -> Checkpoint | None:
        """Return the shard's checkpoint, or None for a fresh shard."""
        ...

    def save(self, consumer: str, stream: str, shard_id: str, checkpoint: Checkpoint) -> None:
        """Durably record that everything up to ``checkpoint.sequence`` is done."""
        ...


class SQLiteCheckpoints:
    """Checkpoints in a local SQLite file (the default; survives a SIGKILL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The consumer is single-threaded, but the CLI may read while it runs.
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            fast_commits(self._db)  # after-ack checkpoints stay safe across a SIGKILL
            with self._db:
                self._db.execute(
                    "create table if not exists checkpoints (consumer text not null, "
                    "stream text not null, shard_id text not null, sequence text not null, "
                    "stream_incarnation text not null default '', "
                    "shard_start text not null default '', "
                    "updated_at text not null default current_timestamp, "
                    "primary key (consumer, stream, shard_id))"
                )
                have = {row[1] for row in self._db.execute("pragma table_info(checkpoints)")}
                for column in _ADDED_COLUMNS:
                    if column not in have:
                        self._db.execute(
                            f"alter table checkpoints add column {column} text not null default ''"
                        )
        except (OSError, sqlite3.Error) as exc:
            raise DeployError(f"cannot open the checkpoint file {self.path}: {exc}") from exc

    def get(self, consumer: str, stream: str, shard_id: str) -> Checkpoint | None:
        """Return the shard's checkpoint, or None for a fresh shard."""
        row = self._db.execute(
            "select sequence, stream_incarnation, shard_start from checkpoints "
            "where consumer = ? and stream = ? and shard_id = ?",
            (consumer, stream, shard_id),
        ).fetchone()
        return None if row is None else Checkpoint(str(row[0]), str(row[1]), str(row[2]))

    def save(self, consumer: str, stream: str, shard_id: str, checkpoint: Checkpoint) -> None:
        """Durably record that everything up to ``checkpoint.sequence`` is done."""
        with self._db:  # one committed transaction per checkpoint
            self._db.execute(
                "insert into checkpoints (consumer, stream, shard_id, sequence, "
                "stream_incarnation, shard_start) values (?, ?, ?, ?, ?, ?) "
                "on conflict (consumer, stream, shard_id) do update set "
                "sequence = excluded.sequence, stream_incarnation = excluded.stream_incarnation, "
                "shard_start = excluded.shard_start, updated_at = current_timestamp",
                (
                    consumer,
                    stream,
                    shard_id,
                    checkpoint.sequence,
                    checkpoint.stream_incarnation,
                    checkpoint.shard_start,
                ),
            )

    def close(self) -> None:
        """Close the database file."""
        self._db.close()


class DynamoCheckpoints:
    """Checkpoints in a DynamoDB table (one item per consumer/stream/shard), for AWS."""

    def __init__(self, client: Any, table: str, create: bool = True) -> None:
        self.client = client
        self.table = table
        if create:
            self._ensure_table()

    def _ensure_table(self) -> None:
        try:
            self.client.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "checkpoint_key", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "checkpoint_key", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except Exception as exc:
            code = aws_error_code(exc)
            if code != "ResourceInUseException":
                raise DeployError(f"cannot create checkpoint table {self.table!r}: {exc}") from exc
        # A new table is CREATING for a while on AWS; reads and writes fail until ACTIVE.
        try:
            self.client.get_waiter("table_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except Exception as exc:
            raise DeployError(
                f"checkpoint table {self.table!r} did not become ACTIVE: {exc}"
            ) from exc
        schema = self.client.describe_table(TableName=self.table)["Table"]["KeySchema"]
        if schema != [{"AttributeName": "checkpoint_key", "KeyType": "HASH"}]:
            raise DeployError(
                f"table {self.table!r} exists but is not a checkpoint table (key {schema})"
            )

    @staticmethod
    def _key(consumer: str, stream: str, shard_id: str) -> dict[str, Any]:
        return {"checkpoint_key": {"S": _KEY_SEPARATOR.join((consumer, stream, shard_id))}}

    def get(self, consumer: str, stream: str, shard_id: str) -> Checkpoint | None:
        """Return the shard's checkpoint, or None for a fresh shard."""
        # Consistent: an eventually consistent read may return the previous owner's older
        # checkpoint, and resuming there repeats rides a restart had already acknowledged.
        item = self.client.get_item(
            TableName=self.table, Key=self._key(consumer, stream, shard_id), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return Checkpoint(
            str(item["sequence"]["S"]),
            str(item.get("stream_incarnation", {}).get("S", "")),
            str(item.get("shard_start", {}).get("S", "")),
        )

    def save(self, consumer: str, stream: str, shard_id: str, checkpoint: Checkpoint) -> None:
        """Durably record that everything up to ``checkpoint.sequence`` is done."""
        self.client.put_item(
            TableName=self.table,
            Item={
                **self._key(consumer, stream, shard_id),
                "consumer": {"S": consumer},
                "stream": {"S": stream},
                "shard_id": {"S": shard_id},
                "sequence": {"S": checkpoint.sequence},
                "stream_incarnation": {"S": checkpoint.stream_incarnation},
                "shard_start": {"S": checkpoint.shard_start},
            },
        )
