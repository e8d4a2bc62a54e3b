"""The consumer in-process against the real moto server: counts, values, poison, fan-out, resume."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from stream_helpers import MakeConsumer, dead_letters, predictions_by_id, ride_bytes

from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.stream.bootstrap import build_consumer
from deploy_modes.stream.checkpoints import DynamoCheckpoints, SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import list_shard_ids, put_records, read_all
from deploy_modes.stream.leases import (
    SHARD_END,
    DynamoLeases,
    LeaseTaker,
)
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.service import OutputRecord, StreamService
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration


def _consumer(service: StreamService, settings: StreamSettings, **changes: Any) -> Consumer:
    settings = settings.model_copy(update=changes)
    return Consumer(
        service,
        aws_client("kinesis", settings.endpoint_url),
        SQLiteCheckpoints(settings.checkpoint_path),
        settings,
    )


def _drain(consumer: Consumer) -> int:
    """Poll until a full round over every shard finds nothing; return the records handled."""
    total = 0
    while handled := consumer.poll_once():
        total += handled
    return total


def test_2000_rides_over_4_shards_become_2000_equal_predictions(
    kinesis: Any,
    streams: StreamSettings,
    stream_service: StreamService,
    model_service: ModelService,
) -> None:
    rides = generated_rides(2000, seed=3)
    assert send_rides(kinesis, streams.input_stream, rides) == 2000
    consumer = _consumer(stream_service, streams, batch_size=300)
    assert _drain(consumer) == 2000
    assert len(consumer.readers) == 4
    assert all(reader.after for reader in consumer.readers.values())  # every shard got rides

    found = predictions_by_id(kinesis, streams.output_stream)
    assert sorted(found) == list(range(1, 2001))
    for ride in rides:
        (duration,) = found[ride["ride_id"]]
        assert duration == model_service.predict_one(ride["ride"])
    assert consumer.stats.predictions == 2000
    assert dead_letters(kinesis, streams.dlq_stream) == []


def test_poison_records_go_to_the_dlq_and_the_rides_around_them_are_predicted(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    records = [
        ride_bytes(130, 205, 3.66, 1),
        b"{this is not json",
        ride_bytes(130, 205, 3.66, 2),
        ride_bytes(130, 205, "far", 3),
        ride_bytes(0, 205, 3.66, 4),
        b"\xff\xfe binary",
        b'{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}}',
        b"x" * 70_000,
        ride_bytes(130, 205, 3.66, 5),
    ]
    # One partition key: all on one shard, in this order, so the good ones surround the bad.
    put_records(kinesis, streams.input_stream, [OutputRecord(d, "same") for d in records])
    consumer = _consumer(stream_service, streams)
    assert _drain(consumer) == len(records)

    assert sorted(predictions_by_id(kinesis, streams.output_stream)) == [1, 2, 5]
    letters = dead_letters(kinesis, streams.dlq_stream)
    assert len(letters) == 6
    errors = " | ".join(letter["error"] for letter in letters)
    for reason in (
        "not valid JSON",
        "must be a number",
        "between 1 and 265",
        "not UTF-8",
        "ride_id is required",
        "more than the 65,536 allowed",
    ):
        assert reason in errors
    by_error = {letter["error"]: letter for letter in letters}
    bad_json = next(v for k, v in by_error.items() if "not valid JSON" in k)
    assert bad_json["payload"] == "{this is not json"
    assert any("payload_base64" in letter for letter in letters)
    # The shard is not stalled: its checkpoint is past the last record.
    (reader,) = [r for r in consumer.readers.values() if r.after]
    store = SQLiteCheckpoints(streams.checkpoint_path)
    checkpoint = store.get("default", streams.input_stream, reader.shard_id)
    assert checkpoint is not None and checkpoint.sequence == reader.after


def test_two_consumer_names_each_see_every_record(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(300, seed=5))
    first = _consumer(stream_service, streams, consumer_name="billing")
    second = _consumer(stream_service, streams, consumer_name="analytics")
    assert _drain(first) == 300
    assert _drain(second) == 300  # the first one's checkpoints do not move the second
    found = predictions_by_id(kinesis, streams.output_stream)
    assert sorted(found) == list(range(1, 301))
    assert all(len(durations) == 2 for durations in found.values())


def test_a_restart_resumes_after_the_checkpoint(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(200, seed=9))
    assert _drain(_consumer(stream_service, streams)) == 200
    send_rides(kinesis, streams.input_stream, generated_rides(50, seed=9, first_id=1001))
    restarted = _consumer(stream_service, streams)
    assert _drain(restarted) == 50  # only the new rides
    found = predictions_by_id(kinesis, streams.output_stream)
    assert len(found) == 250
    assert all(len(durations) == 1 for durations in found.values())


def test_run_stops_between_batches_and_has_checkpointed(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(400, seed=1))
    consumer = _consumer(stream_service, streams, batch_size=50)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        for _ in range(400):
            if consumer.stats.records >= 400:
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert consumer.stats.records == 400
    store = SQLiteCheckpoints(streams.checkpoint_path)
    for shard_id in list_shard_ids(kinesis, streams.input_stream):
        checkpoint = store.get("default", streams.input_stream, shard_id)
        assert checkpoint is not None and checkpoint.sequence == consumer.readers[shard_id].after


def test_a_missing_output_stream_keeps_the_records_for_later(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(20, seed=2))
    broken = _consumer(stream_service, streams, output_stream="nowhere", put_attempts=1)
    assert broken.poll_once() == 0  # the puts fail: nothing is counted or checkpointed
    assert broken.stats.errors >= 1
    store = SQLiteCheckpoints(streams.checkpoint_path)
    for shard_id in list_shard_ids(kinesis, streams.input_stream):
        assert store.get("default", streams.input_stream, shard_id) is None
    assert _drain(_consumer(stream_service, streams)) == 20


def test_wired_consumer_with_dynamodb_checkpoints_resumes(
    kinesis: Any, streams: StreamSettings, model_dir: Path
) -> None:
    settings = streams.model_copy(
        update={"checkpoint_store": "dynamodb", "checkpoint_table": f"cp_{uuid.uuid4().hex[:8]}"}
    )
    send_rides(kinesis, settings.input_stream, generated_rides(120, seed=6))
    first = build_consumer(str(model_dir), settings)
    assert isinstance(first.checkpoints, DynamoCheckpoints)
    # A group by default, its leases beside the checkpoints: in DynamoDB too.
    assert first.leases is not None and isinstance(first.leases.table, DynamoLeases)
    assert _drain(first) == 120
    first.leases.release_all()  # what a graceful stop does
    second = build_consumer(str(model_dir), settings)
    assert _drain(second) == 0  # resumes after the checkpoint
    assert second.leases is not None and len(second.leases.held) == 4  # it did read every shard
    assert len(predictions_by_id(kinesis, settings.output_stream)) == 120


def _failing_shard_iterator(
    client: Any, shard_id: str, code: str, status: int, iterator_type: str | None = None
) -> Callable[[], None]:
    """Make ``client``'s GetShardIterator on ``shard_id`` fail with ``code``; return the undo.

    ``iterator_type`` limits the failure to that kind of iterator. The answer is made before
    the call leaves the real client, for failures moto never gives.
    """

    def fail(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        asked = json.loads(params["body"])
        if asked["ShardId"] != shard_id or iterator_type not in (None, asked["ShardIteratorType"]):
            return None
        error = {"Code": code, "Message": f"{code} on {shard_id} (made by the test)"}
        return AWSResponse(params["url"], status, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    event = "before-call.kinesis.GetShardIterator"
    client.meta.events.register(event, fail)
    return lambda: client.meta.events.unregister(event, fail)


def test_a_shard_refused_its_checkpoint_rereads_from_trim_horizon_and_the_others_read_on(
    kinesis: Any, streams: StreamSettings, make_consumer: MakeConsumer
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(80, seed=12))
    first, _ = make_consumer(streams)
    assert _drain(first) == 80
    assert all(reader.after for reader in first.readers.values())  # every shard checkpointed
    send_rides(kinesis, streams.input_stream, generated_rides(80, seed=13, first_id=81))
    shard_of = {
        json.loads(record.data)["ride_id"]: record.shard_id
        for record, _ in read_all(kinesis, streams.input_stream)
    }
    refused = list_shard_ids(kinesis, streams.input_stream)[0]  # the first shard a poll reads
    restarted, lines = make_consumer(streams)
    # Real Kinesis refuses a sequence number trimmed away (past the retention period); moto
    # resumes after any number.
    _failing_shard_iterator(
        restarted.kinesis, refused, "InvalidArgumentException", 400, "AFTER_SEQUENCE_NUMBER"
    )

    # One poll still reads every other shard: the refused one only changes where it starts.
    others = [i for i in range(81, 161) if shard_of[i] != refused]
    assert 0 < len(others) < 80
    assert restarted.poll_once() == len(others)
    assert any(f"reading {refused} from TRIM_HORIZON" in line for line in lines)
    # The refused shard is read again from its first ride (at-least-once, none lost).
    on_refused = [i for i in shard_of if shard_of[i] == refused]
    assert _drain(restarted) == len(on_refused)
    found = predictions_by_id(kinesis, streams.output_stream)
    assert sorted(found) == list(range(1, 161))
    for ride_id, durations in found.items():
        assert len(durations) == (2 if ride_id in on_refused and ride_id <= 80 else 1)


def test_a_shard_whose_read_fails_waits_and_the_others_are_read_in_the_same_poll(
    kinesis: Any, streams: StreamSettings, make_consumer: MakeConsumer
) -> None:
    rides = generated_rides(80, seed=14)
    send_rides(kinesis, streams.input_stream, rides)
    shard_of = {
        json.loads(record.data)["ride_id"]: record.shard_id
        for record, _ in read_all(kinesis, streams.input_stream)
    }
    broken = list_shard_ids(kinesis, streams.input_stream)[0]  # the first shard a poll reads
    consumer, lines = make_consumer(streams)
    heal = _failing_shard_iterator(consumer.kinesis, broken, "InternalFailure", 500)

    others = [i for i in shard_of if shard_of[i] != broken]
    assert 0 < len(others) < 80
    assert consumer.poll_once() == len(others)  # one failing shard does not hold up the rest
    assert consumer.failing is not None and broken in consumer.failing
    assert any(f"reading {broken} failed" in line for line in lines)
    heal()
    assert _drain(consumer) == 80 - len(others)
    assert consumer.failing is None
    found = predictions_by_id(kinesis, streams.output_stream)
    assert sorted(found) == sorted(ride["ride_id"] for ride in rides)
    assert all(len(durations) == 1 for durations in found.values())


def test_a_lease_lost_with_its_batch_in_flight_leaves_the_other_shards_checkpointed(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """The lost shard is not checkpointed (its new owner repeats it); every other shard is."""
    settings: StreamSettings = make_streams(3)
    consumer, lines = make_consumer(settings, owner="a")
    assert consumer.leases is not None
    table, store = consumer.leases.table, consumer.checkpoints
    assert consumer.poll_once() == 0
    shard_ids = list_shard_ids(kinesis, settings.input_stream)
    assert list(consumer.readers) == shard_ids  # alone in the group: it holds every lease
    send_rides(kinesis, settings.input_stream, generated_rides(80, seed=15))
    last = {
        record.shard_id: record.sequence for record, _ in read_all(kinesis, settings.input_stream)
    }
    assert set(last) == set(shard_ids)  # every shard has rides in the batch
    lost = shard_ids[0]  # the first shard of the batch

    taken: list[str] = []

    def take_over(**_: Any) -> None:  # while the batch's predictions are being put
        if not taken:
            (seen,) = [lease for lease in table.list() if lease.shard_id == lost]
            assert table.write(seen, LeaseTaker.taken(seen, "b"))
            taken.append(lost)

    consumer.kinesis.meta.events.register("before-call.kinesis.PutRecords", take_over)
    assert consumer.poll_once() == 80
    assert taken == [lost]
    assert f"lost the lease of {lost} (checkpoint refused)" in lines
    assert lost not in consumer.readers
    assert store.get(settings.consumer_name, settings.input_stream, lost) is None
    for shard_id in shard_ids[1:]:
        checkpoint = store.get(settings.consumer_name, settings.input_stream, shard_id)
        assert checkpoint is not None and checkpoint.sequence == last[shard_id]


def test_a_shard_read_to_its_end_is_checkpointed_then_finished_in_its_lease(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """SHARD_END is written only after the shard's last batch is checkpointed.

    Kinesis ends a closed shard's reads with no ``NextShardIterator``; moto never does (see
    test_stream_reshard.py), so the real answer has that key removed on arrival.
    """
    settings: StreamSettings = make_streams(1)
    consumer, lines = make_consumer(settings, owner="a")
    assert consumer.leases is not None
    table, store = consumer.leases.table, consumer.checkpoints
    send_rides(kinesis, settings.input_stream, generated_rides(10, seed=16))
    ((shard_id, last),) = {
        record.shard_id: record.sequence for record, _ in read_all(kinesis, settings.input_stream)
    }.items()

    def closed(parsed: dict[str, Any], **_: Any) -> None:
        parsed.pop("NextShardIterator", None)

    consumer.kinesis.meta.events.register("after-call.kinesis.GetRecords", closed)
    assert consumer.poll_once() == 10  # the last batch: read, closed, not finished yet
    checkpoint = store.get(settings.consumer_name, settings.input_stream, shard_id)
    assert checkpoint is not None and checkpoint.sequence == last
    (lease,) = table.list()
    assert lease.checkpoint != SHARD_END and lease.owner == "a"
    assert consumer.poll_once() == 0  # nothing more: the shard is done
    (lease,) = table.list()
    assert (lease.checkpoint, lease.owner) == (SHARD_END, None)
    assert shard_id not in consumer.readers
    assert f"{shard_id} read to its end (SHARD_END)" in lines


def test_a_lease_taken_over_between_polls_is_not_read_again(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """The next poll reads only the shards still held: no ride is predicted by two owners."""
    settings: StreamSettings = make_streams(2)
    consumer, lines = make_consumer(settings, owner="a")
    assert consumer.leases is not None
    table = consumer.leases.table
    assert consumer.poll_once() == 0
    shard_ids = list_shard_ids(kinesis, settings.input_stream)
    assert list(consumer.readers) == shard_ids
    lost = shard_ids[0]
    (seen,) = [lease for lease in table.list() if lease.shard_id == lost]
    assert table.write(seen, LeaseTaker.taken(seen, "b"))  # consumer b takes it over
    send_rides(kinesis, settings.input_stream, generated_rides(60, seed=18))
    shard_of = {
        json.loads(record.data)["ride_id"]: record.shard_id
        for record, _ in read_all(kinesis, settings.input_stream)
    }
    kept = [ride_id for ride_id, shard_id in shard_of.items() if shard_id != lost]
    assert 0 < len(kept) < 60
    assert _drain(consumer) == len(kept)
    assert f"lost the lease of {lost} (taken over)" in lines
    assert list(consumer.readers) == shard_ids[1:]
    assert sorted(predictions_by_id(kinesis, settings.output_stream)) == sorted(kept)


def test_each_different_failure_is_one_line_and_none_is_taken_for_a_recreated_stream(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """Two AWS errors of one class but different codes are two states; a repeat is none."""
    settings: StreamSettings = make_streams(2)
    consumer, lines = make_consumer(settings)
    broken = list_shard_ids(kinesis, settings.input_stream)[0]
    heal = _failing_shard_iterator(consumer.kinesis, broken, "InternalFailure", 500)
    assert consumer.poll_once() == 0  # the other shard is read (empty); this one fails
    assert consumer.failing is not None and broken in consumer.failing
    heal()
    heal = _failing_shard_iterator(consumer.kinesis, broken, "ServiceUnavailable", 503)
    for _ in range(3):  # the shard reopens after each failure and fails the same way
        assert consumer.poll_once() == 0
    heal()
    assert consumer.poll_once() == 0 and consumer.failing is None
    failed = [line for line in lines if " failed: " in line]
    assert len(failed) == 2, lines
    assert "(InternalFailure)" in failed[0] and "(ServiceUnavailable)" in failed[1]
    assert sum("recovered after" in line for line in lines) == 1
    assert not any("created again" in line for line in lines), lines
