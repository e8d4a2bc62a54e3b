"""Kinesis adapters against the real moto server, plus the retry rules on a scripted client.

Moto never fails single PutRecords entries or throttles, so the partial-failure and backoff
rules are checked on a small scripted client that answers like Kinesis does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.stream.bootstrap import kinesis_client
from deploy_modes.stream.kinesis import (
    ShardReader,
    StreamError,
    answers_kinesis,
    client_config,
    ensure_streams,
    list_shard_ids,
    put_records,
    put_records_reporting,
    read_all,
)
from deploy_modes.stream.service import OutputRecord
from deploy_modes.stream.settings import StreamSettings


def _records(n: int) -> list[OutputRecord]:
    return [OutputRecord(f"r{i}".encode(), str(i)) for i in range(n)]


class ScriptedKinesis:
    """Answer PutRecords from a script: entry failures by index, or a raised error."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([r["Data"] for r in Records])
        step = self.script.pop(0) if self.script else set()
        if isinstance(step, Exception):
            raise step
        entries = [
            {"ErrorCode": "InternalFailure"} if i in step else {"SequenceNumber": str(i)}
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": len(step), "Records": entries}


def _throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "PutRecords",
    )


def test_only_failed_entries_are_retried() -> None:
    client = ScriptedKinesis([{1, 3}, {0}, set()])
    sleeps: list[float] = []
    put_records(client, "s", _records(5), sleep=sleeps.append)
    assert client.calls == [
        [b"r0", b"r1", b"r2", b"r3", b"r4"],
        [b"r1", b"r3"],
        [b"r1"],
    ]
    assert sleeps == [0.1, 0.2]


def test_a_failed_call_is_not_retried_on_top_of_botocore() -> None:
    # botocore's standard mode already retried the throttled call: retrying again here
    # would multiply the attempts (8 x 5 before), so the error goes straight to the caller.
    client = ScriptedKinesis([_throttled(), set()])
    with pytest.raises(StreamError, match="ProvisionedThroughputExceededException"):
        put_records(client, "s", _records(3), sleep=lambda s: None)
    assert len(client.calls) == 1


def test_clients_use_botocore_standard_retries(streams: StreamSettings) -> None:
    for client in (kinesis_client(streams), aws_client("dynamodb", config=client_config())):
        assert client.meta.config.retries["mode"] == "standard"
        assert client.meta.config.connect_timeout == 5


def test_failed_entries_are_returned_not_raised_by_the_reporting_put() -> None:
    client = ScriptedKinesis([{1, 3}, {1}, {0}])
    records = _records(5)
    assert put_records_reporting(client, "s", records, attempts=3, sleep=lambda s: None) == [
        records[3]
    ]
    assert client.calls == [[b"r0", b"r1", b"r2", b"r3", b"r4"], [b"r1", b"r3"], [b"r3"]]


def test_entries_that_keep_failing_raise_after_the_attempts() -> None:
    client = ScriptedKinesis([{0}] * 10)
    with pytest.raises(StreamError, match="1 records still failed after 3 attempts"):
        put_records(client, "s", _records(2), attempts=3, sleep=lambda s: None)


def test_other_errors_are_not_retried() -> None:
    error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Put")
    client = ScriptedKinesis([error])
    with pytest.raises(StreamError, match="AccessDeniedException"):
        put_records(client, "s", _records(2), sleep=lambda s: None)
    assert len(client.calls) == 1


def test_big_batches_are_split_at_500_records() -> None:
    client = ScriptedKinesis([])
    put_records(client, "s", _records(1201), sleep=lambda s: None)
    assert [len(call) for call in client.calls] == [500, 500, 201]


@pytest.mark.integration
def test_streams_are_created_once_and_shards_discovered(kinesis: Any, make_streams: Any) -> None:
    settings: StreamSettings = make_streams(3)
    names = [settings.input_stream, settings.output_stream, settings.dlq_stream]
    ensure_streams(kinesis, names, 3, say=lambda m: None)  # idempotent
    assert len(list_shard_ids(kinesis, settings.input_stream)) == 3
    status = kinesis.describe_stream_summary(StreamName=settings.output_stream)
    assert status["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


@pytest.mark.integration
def test_missing_stream_is_a_clear_error(kinesis: Any) -> None:
    with pytest.raises(StreamError, match="does not exist: run `deploy stream init`"):
        list_shard_ids(kinesis, "no_such_stream")
    with pytest.raises(StreamError, match="does not exist"):
        put_records(kinesis, "no_such_stream", _records(1))


@pytest.mark.integration
def test_reader_resumes_after_a_sequence_number(kinesis: Any, streams: StreamSettings) -> None:
    put_records(kinesis, streams.input_stream, [OutputRecord(b"x%d" % i, "k") for i in range(10)])
    shard = next(
        s
        for s in list_shard_ids(kinesis, streams.input_stream)
        if ShardReader(kinesis, streams.input_stream, s).read(100)
    )
    first = ShardReader(kinesis, streams.input_stream, shard).read(4)
    assert [r.data for r in first] == [b"x0", b"x1", b"x2", b"x3"]
    resumed = ShardReader(kinesis, streams.input_stream, shard, after=first[-1].sequence)
    assert [r.data for r in resumed.read(100)] == [b"x%d" % i for i in range(4, 10)]
    assert resumed.read(100) == []
    assert sorted(r.data for r, _ in read_all(kinesis, streams.input_stream)) == sorted(
        b"x%d" % i for i in range(10)
    )


class ThrottledReads:
    """GetRecords that is throttled once, then returns one record."""

    def __init__(self) -> None:
        self.calls = 0

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, str]:
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise _throttled()
        return {
            "Records": [{"Data": b"x", "SequenceNumber": "9"}],
            "NextShardIterator": "it-1",
        }


def test_throttled_get_records_is_an_empty_poll_not_an_error() -> None:
    reader = ShardReader(ThrottledReads(), "s", "shard-0")
    assert reader.read(10) == []
    assert [r.sequence for r in reader.read(10)] == ["9"]
    assert reader.after == "9"


@pytest.mark.integration
def test_only_a_kinesis_endpoint_counts_as_the_emulator(
    moto_server: Emulator, tmp_path: Path
) -> None:
    assert answers_kinesis(moto_server.url)
    assert not answers_kinesis(f"http://127.0.0.1:{free_port()}")  # nothing listens
    port = free_port()
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with ManagedProcess("http server", args, log_path=tmp_path / "http.log") as server:
        wait_http(f"http://127.0.0.1:{port}/", timeout=20, process=server)
        assert not answers_kinesis(f"http://127.0.0.1:{port}")  # HTTP, but not Kinesis
