"""Kinesis adapters: put with partial-failure retry, stream creation, shard discovery, reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deploy_modes.core.errors import DeployError
from deploy_modes.stream.service import InputRecord, OutputRecord

__all__ = [
    "MAX_PUT_BYTES",
    "MAX_PUT_RECORDS",
    "ShardReader",
    "StreamError",
    "ensure_streams",
    "list_shard_ids",
    "put_records",
    "read_all",
]

MAX_PUT_RECORDS = 500  # PutRecords' per-call limits
MAX_PUT_BYTES = 5 * 1024 * 1024
_THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceeded"}
_BACKOFF_BASE = 0.1
_BACKOFF_MAX = 5.0


class StreamError(DeployError):
    """A stream is missing or a put could not be acknowledged."""


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def _why(exc: Exception) -> str:
    """Return the AWS error code, or the whole message for a connection-level failure."""
    return _code(exc) if hasattr(exc, "response") else str(exc)


def _chunks(records: Sequence[OutputRecord]) -> Iterator[list[OutputRecord]]:
    chunk: list[OutputRecord] = []
    size = 0
    for record in records:
        record_size = len(record.data) + len(record.partition_key.encode())
        if chunk and (len(chunk) == MAX_PUT_RECORDS or size + record_size > MAX_PUT_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += record_size
    if chunk:
        yield chunk


def put_records(
    client: Any,
    stream: str,
    records: Sequence[OutputRecord],
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Put every record, retrying only the failed entries with backoff; raise if any stay failed."""
    for chunk in _chunks(records):
        pending = chunk
        for attempt in range(attempts):
            try:
                response = client.put_records(
                    StreamName=stream,
                    Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
                )
            except Exception as exc:
                code = _code(exc)
                if code == "ResourceNotFoundException":
                    raise StreamError(f"stream {stream!r} does not exist") from exc
                if code not in _THROTTLED or attempt == attempts - 1:
                    raise StreamError(f"PutRecords to {stream!r} failed: {_why(exc)}") from exc
                sleep(min(_BACKOFF_MAX, _BACKOFF_BASE * 2**attempt))
                continue
            if not response.get("FailedRecordCount"):
                break
            # Only the entries with an ErrorCode failed; the rest are stored and must not repeat.
            pending = [
                record
                for record, entry in zip(pending, response["Records"], strict=True)
                if entry.get("ErrorCode")
            ]
            if attempt < attempts - 1:
                sleep(min(_BACKOFF_MAX, _BACKOFF_BASE * 2**attempt))
        else:
            raise StreamError(
                f"PutRecords to {stream!r}: {len(pending)} records still failed "
                f"after {attempts} attempts"
            )


def list_shard_ids(client: Any, stream: str) -> list[str]:
    """Return the ids of every shard of ``stream`` (following ListShards pages)."""
    shard_ids: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    try:
        while True:
            page = client.list_shards(**kwargs)
            shard_ids.extend(shard["ShardId"] for shard in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shard_ids
            kwargs = {"NextToken": token}
    except Exception as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise StreamError(
                f"stream {stream!r} does not exist: run `deploy stream init` first"
            ) from exc
        raise StreamError(f"cannot list the shards of {stream!r}: {_why(exc)}") from exc


def ensure_streams(
    client: Any, names: Sequence[str], shards: int, say: Callable[[str], None] = print
) -> None:
    """Create each missing stream with ``shards`` shards and wait until all are ACTIVE."""
    for name in names:
        try:
            client.create_stream(StreamName=name, ShardCount=shards)
            say(f"created stream {name} ({shards} shards)")
        except Exception as exc:
            if _code(exc) != "ResourceInUseException":
                raise StreamError(f"cannot create stream {name!r}: {_why(exc)}") from exc
    waiter = client.get_waiter("stream_exists")
    for name in names:
        try:
            waiter.wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        except Exception as exc:
            raise StreamError(f"stream {name!r} did not become ACTIVE: {exc}") from exc


@dataclass
class ShardReader:
    """Read one shard with GetRecords, resuming after a sequence number."""

    client: Any
    stream: str
    shard_id: str
    after: str | None = None
    start_position: str = "TRIM_HORIZON"
    _iterator: str | None = None
    closed: bool = False

    def _new_iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard_id}
        if self.after is not None:
            kwargs |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": self.after,
            }
        else:
            kwargs["ShardIteratorType"] = self.start_position
        return str(self.client.get_shard_iterator(**kwargs)["ShardIterator"])

    def read(self, limit: int) -> list[InputRecord]:
        """Return the next records (possibly none); the position advances past them."""
        if self.closed:
            return []
        if self._iterator is None:
            self._iterator = self._new_iterator()
        try:
            response = self.client.get_records(ShardIterator=self._iterator, Limit=limit)
        except Exception as exc:
            code = _code(exc)
            if code in _THROTTLED:
                return []  # 5 GetRecords/s per shard: an empty poll, the caller waits
            if code != "ExpiredIteratorException":
                raise
            self._iterator = self._new_iterator()  # resumes after the last record we returned
            response = self.client.get_records(ShardIterator=self._iterator, Limit=limit)
        self._iterator = response.get("NextShardIterator")
        if self._iterator is None:  # the shard was closed by a reshard and is fully read
            self.closed = True
        records = [
            InputRecord(r["Data"], r["SequenceNumber"], self.shard_id) for r in response["Records"]
        ]
        if records:
            self.after = records[-1].sequence
        return records


def read_all(
    client: Any, stream: str, limit: int = 10_000
) -> Iterator[tuple[InputRecord, dict[str, Any]]]:
    """Yield every record now in ``stream`` (all shards, oldest first per shard) once."""
    for shard_id in list_shard_ids(client, stream):
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=limit)
            for raw in response["Records"]:
                yield InputRecord(raw["Data"], raw["SequenceNumber"], shard_id), raw
            if not response["Records"]:  # caught up with this shard
                break
            iterator = response.get("NextShardIterator")
