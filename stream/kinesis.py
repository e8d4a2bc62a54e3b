"""Kinesis adapters: put with partial-failure re-put, stream creation, shard discovery, reads.

Throttling and connection errors are retried by botocore itself (``standard`` retry mode, see
:func:`client_config`); this module re-puts only the entries a PutRecords call reported as
failed, so the two never multiply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from deploy_modes.core.errors import DeployError
from deploy_modes.stream.service import InputRecord, OutputRecord

__all__ = [
    "MAX_PUT_BYTES",
    "MAX_PUT_RECORDS",
    "CheckpointOutOfRange",
    "Shard",
    "ShardReader",
    "StreamError",
    "answers_kinesis",
    "client_config",
    "ensure_streams",
    "list_shard_ids",
    "list_shards",
    "put_records",
    "put_records_reporting",
    "read_all",
    "server_time",
    "stream_incarnation",
]

MAX_PUT_RECORDS = 500  # PutRecords' per-call limits
MAX_PUT_BYTES = 5 * 1024 * 1024
_THROTTLED = {"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceeded"}
_BACKOFF_BASE = 0.1
_BACKOFF_MAX = 5.0


class StreamError(DeployError):
    """A stream is missing or a put could not be acknowledged."""


class CheckpointOutOfRange(StreamError):
    """Kinesis refused to resume a shard after a sequence number that is not in it."""


def client_config(connect_timeout: float = 5.0, read_timeout: float = 10.0) -> Any:
    """Return the botocore config every Kinesis client uses: ``standard`` retries, short timeouts.

    ``standard`` retries throttling and connection errors with backoff (``AWS_MAX_ATTEMPTS``,
    default 3); the short connect timeout keeps an endpoint that does not answer from hanging
    a call for botocore's default 60 s.
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard"}, connect_timeout=connect_timeout, read_timeout=read_timeout
    )


def answers_kinesis(url: str, timeout: float = 2.0) -> bool:
    """Return whether a Kinesis API (not just any HTTP server) answers at ``url``."""
    from botocore.config import Config

    from deploy_modes.core.storage import aws_client, emulator_keys

    config = Config(
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=timeout,
        read_timeout=timeout,
    )
    # Any credentials do for an emulator; without some boto3 refuses to sign the probe.
    client = aws_client("kinesis", url, config=config, **emulator_keys())
    try:
        return isinstance(client.list_streams(Limit=1).get("StreamNames"), list)
    except Exception:  # refused, timed out, or an HTTP server that does not speak Kinesis
        return False


def _code(exc: Exception) -> str:
    """Return the AWS error code, or the exception's type for a failure that has none."""
    from deploy_modes.core.storage import aws_error_code

    return aws_error_code(exc) or type(exc).__name__


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


def _put_chunk(
    client: Any,
    stream: str,
    chunk: list[OutputRecord],
    attempts: int,
    sleep: Callable[[float], None],
) -> list[OutputRecord]:
    """Put one chunk, re-putting only failed entries; return the entries that stayed failed."""
    pending = chunk
    for attempt in range(attempts):
        try:
            response = client.put_records(
                StreamName=stream,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
            )
        except Exception as exc:  # botocore already retried throttling and connection errors
            if _code(exc) == "ResourceNotFoundException":
                raise StreamError(f"stream {stream!r} does not exist") from exc
            raise StreamError(f"PutRecords to {stream!r} failed: {_why(exc)}") from exc
        if not response.get("FailedRecordCount"):
            return []
        # Only the entries with an ErrorCode failed; the rest are stored and must not repeat.
        pending = [
            record
            for record, entry in zip(pending, response["Records"], strict=True)
            if entry.get("ErrorCode")
        ]
        if attempt < attempts - 1:
            sleep(min(_BACKOFF_MAX, _BACKOFF_BASE * 2**attempt))
    return pending


def put_records_reporting(
    client: Any,
    stream: str,
    records: Sequence[OutputRecord],
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> list[OutputRecord]:
    """Put every record; return those whose entries still failed after ``attempts`` puts.

    A call that fails as a whole (missing stream, access denied, endpoint down after
    botocore's retries) raises :class:`StreamError`.
    """
    failed: list[OutputRecord] = []
    for chunk in _chunks(records):
        failed.extend(_put_chunk(client, stream, chunk, attempts, sleep))
    return failed


def put_records(
    client: Any,
    stream: str,
    records: Sequence[OutputRecord],
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Put every record, re-putting only the failed entries; raise if any stay failed."""
    for chunk in _chunks(records):
        if failed := _put_chunk(client, stream, chunk, attempts, sleep):
            raise StreamError(
                f"PutRecords to {stream!r}: {len(failed)} records still failed "
                f"after {attempts} attempts"
            )


@dataclass(frozen=True)
class Shard:
    """One shard as ListShards describes it: its id, parents and sequence number range."""

    shard_id: str
    starting_sequence: str
    ending_sequence: str | None = None
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None

    @property
    def closed(self) -> bool:
        """Return whether a reshard closed this shard (it has an ending sequence number)."""
        return self.ending_sequence is not None


def _not_found(stream: str, exc: Exception) -> StreamError:
    if _code(exc) == "ResourceNotFoundException":
        return StreamError(f"stream {stream!r} does not exist: run `deploy stream init` first")
    return StreamError(f"cannot read stream {stream!r}: {_why(exc)}")


def list_shards(client: Any, stream: str) -> list[Shard]:
    """Return every shard of ``stream`` (following ListShards pages)."""
    shards: list[Shard] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    try:
        while True:
            page = client.list_shards(**kwargs)
            for raw in page.get("Shards", []):
                numbers = raw.get("SequenceNumberRange", {})
                shards.append(
                    Shard(
                        raw["ShardId"],
                        str(numbers.get("StartingSequenceNumber", "")),
                        numbers.get("EndingSequenceNumber"),
                        raw.get("ParentShardId"),
                        raw.get("AdjacentParentShardId"),
                    )
                )
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}
    except Exception as exc:
        raise _not_found(stream, exc) from exc


def list_shard_ids(client: Any, stream: str) -> list[str]:
    """Return the ids of every shard of ``stream``."""
    return [shard.shard_id for shard in list_shards(client, stream)]


def _describe_summary(client: Any, stream: str) -> dict[str, Any]:
    """Return DescribeStreamSummary's whole answer (its HTTP headers included)."""
    try:
        return dict(client.describe_stream_summary(StreamName=stream))
    except Exception as exc:
        raise _not_found(stream, exc) from exc


def stream_incarnation(client: Any, stream: str) -> str:
    """Return what names this incarnation of ``stream``: its ARN and creation time.

    A stream deleted and created again under the same name (or on an emulator restarted
    with fresh state) has the same ARN but a new creation time, and sequence numbers that
    start over, so a checkpoint of the old one must not be applied to it.
    """
    summary = _describe_summary(client, stream)["StreamDescriptionSummary"]
    created = summary["StreamCreationTimestamp"]
    return f"{summary['StreamARN']}@{created.timestamp():.3f}"


def server_time(client: Any, stream: str) -> float | None:
    """Return the Kinesis endpoint's own clock (its HTTP ``Date``, whole seconds), or None.

    Record arrival stamps are the server's, so "arrived since now" must be asked in the
    server's time: this host's clock may run ahead of it. A Date without a time zone is not
    used (read as local time it would be off by the host's offset), nor one that does not parse.
    """
    answer = _describe_summary(client, stream)
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    try:
        stamp = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return stamp.timestamp() if stamp.tzinfo is not None else None


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
    at_timestamp: float | None = None  # epoch seconds, for start_position AT_TIMESTAMP
    _iterator: str | None = None
    closed: bool = False

    def _new_iterator(self) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard_id}
        if self.after is None:
            kwargs["ShardIteratorType"] = self.start_position
            if self.start_position == "AT_TIMESTAMP":
                kwargs["Timestamp"] = self.at_timestamp
            return str(self.client.get_shard_iterator(**kwargs)["ShardIterator"])
        kwargs |= {
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": self.after,
        }
        try:
            return str(self.client.get_shard_iterator(**kwargs)["ShardIterator"])
        except Exception as exc:
            if _code(exc) == "InvalidArgumentException":  # not a sequence number of this shard
                raise CheckpointOutOfRange(
                    f"{self.shard_id}: Kinesis refused to resume after {self.after}: {_why(exc)}"
                ) from exc
            raise

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
        raw = response.get("Records")
        if not isinstance(raw, list):  # e.g. an endpoint dying mid-answer: say so, not KeyError
            raise StreamError(
                f"GetRecords on {self.shard_id} answered without a Records list "
                f"(keys: {sorted(response)})"
            )
        records = [InputRecord(r["Data"], r["SequenceNumber"], self.shard_id) for r in raw]
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
