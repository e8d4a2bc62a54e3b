"""Durable shard checkpoints keyed by (consumer name, stream, shard): SQLite or DynamoDB."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol

from deploy_modes.core.errors import DeployError

__all__ = ["CheckpointStore", "DynamoCheckpoints", "SQLiteCheckpoints"]

_KEY_SEPARATOR = "|"


class CheckpointStore(Protocol):
    """Where a consumer remembers the last acknowledged sequence number of each shard."""

    def get(self, consumer: str, stream: str, shard_id: str) -> str | None:
        """Return the checkpointed sequence number, or None for a fresh shard."""
        ...

    def save(self, consumer: str, stream: str, shard_id: str, sequence: str) -> None:
        """Durably record that everything up to ``sequence`` is done."""
        ...


class SQLiteCheckpoints:
    """Checkpoints in a local SQLite file (the default; survives a SIGKILL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The consumer is single-threaded, but the CLI may read while it runs.
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute(
                "create table if not exists checkpoints (consumer text not null, "
                "stream text not null, shard_id text not null, sequence text not null, "
                "updated_at text not null default current_timestamp, "
                "primary key (consumer, stream, shard_id))"
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise DeployError(f"cannot open the checkpoint file {self.path}: {exc}") from exc

    def get(self, consumer: str, stream: str, shard_id: str) -> str | None:
        """Return the checkpointed sequence number, or None for a fresh shard."""
        row = self._db.execute(
            "select sequence from checkpoints where consumer = ? and stream = ? and shard_id = ?",
            (consumer, stream, shard_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def save(self, consumer: str, stream: str, shard_id: str, sequence: str) -> None:
        """Durably record that everything up to ``sequence`` is done."""
        with self._db:  # one committed transaction per checkpoint
            self._db.execute(
                "insert into checkpoints (consumer, stream, shard_id, sequence) "
                "values (?, ?, ?, ?) on conflict (consumer, stream, shard_id) do update set "
                "sequence = excluded.sequence, updated_at = current_timestamp",
                (consumer, stream, shard_id, sequence),
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
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code != "ResourceInUseException":
                raise DeployError(f"cannot create checkpoint table {self.table!r}: {exc}") from exc
        self.client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    @staticmethod
    def _key(consumer: str, stream: str, shard_id: str) -> dict[str, Any]:
        return {"checkpoint_key": {"S": _KEY_SEPARATOR.join((consumer, stream, shard_id))}}

    def get(self, consumer: str, stream: str, shard_id: str) -> str | None:
        """Return the checkpointed sequence number, or None for a fresh shard."""
        item = self.client.get_item(
            TableName=self.table, Key=self._key(consumer, stream, shard_id), ConsistentRead=True
        ).get("Item")
        return None if item is None else str(item["sequence"]["S"])

    def save(self, consumer: str, stream: str, shard_id: str, sequence: str) -> None:
        """Durably record that everything up to ``sequence`` is done."""
        self.client.put_item(
            TableName=self.table,
            Item={
                **self._key(consumer, stream, shard_id),
                "consumer": {"S": consumer},
                "stream": {"S": stream},
                "shard_id": {"S": shard_id},
                "sequence": {"S": sequence},
            },
        )
