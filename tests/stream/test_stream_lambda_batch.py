"""The Lambda batch rules: poison to the dead-letter stream, item failures only for failed puts.

Moto never fails single PutRecords entries, so the partial-failure cases run the real
``put_records_reporting`` on a scripted client that answers like Kinesis does; whole-call
failures and the dead-letter stream are checked on the real moto server.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from stream_helpers import COURSE_EVENT, dead_letters, predictions_by_id, ride_bytes

from deploy_modes.core.scoring import ModelService
from deploy_modes.stream.kinesis import StreamError, put_records_reporting
from deploy_modes.stream.lambda_batch import LambdaBatch
from deploy_modes.stream.service import OutputRecord, StreamService
from deploy_modes.stream.settings import StreamSettings


def _record(sequence: Any, data: bytes | str) -> dict[str, Any]:
    raw = copy.deepcopy(COURSE_EVENT["Records"][0])
    raw["kinesis"]["sequenceNumber"] = sequence
    raw["kinesis"]["data"] = data if isinstance(data, str) else base64.b64encode(data).decode()
    return raw


def _ride(sequence: Any, ride_id: int) -> dict[str, Any]:
    return _record(sequence, ride_bytes(130, 205, 3.66, ride_id))


class Collect:
    """A put that stores what it was given and fails nothing."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def __call__(self, records: list[OutputRecord]) -> list[OutputRecord]:
        self.records.extend(records)
        return []


class FailingEntries:
    """A PutRecords client whose entries for chosen partition keys always fail."""

    def __init__(self, failing_keys: set[str]) -> None:
        self.failing_keys = failing_keys
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        entries = [
            {"ErrorCode": "InternalFailure"}
            if r["PartitionKey"] in self.failing_keys
            else {"SequenceNumber": "1"}
            for r in Records
        ]
        failed = sum("ErrorCode" in entry for entry in entries)
        return {"FailedRecordCount": failed, "Records": entries}


def _put(client: FailingEntries) -> Any:
    return lambda records: put_records_reporting(client, "s", records, 3, lambda s: None)


def test_course_event_is_predicted_and_put(
    stream_service: StreamService, model_service: ModelService
) -> None:
    predictions, letters = Collect(), Collect()
    response = LambdaBatch(stream_service, predictions, letters).handle(COURSE_EVENT)
    expected = model_service.predict_one(
        {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
    )
    assert response == {
        "predictions": [
            {
                "model": "ride_duration_prediction_model",
                "version": model_service.version,
                "prediction": {"ride_duration": expected, "ride_id": 256},
            }
        ],
        "batchItemFailures": [],
    }
    assert [r.partition_key for r in predictions.records] == ["256"]
    assert letters.records == []


def test_poison_goes_to_the_dead_letters_and_is_not_retried(
    stream_service: StreamService,
) -> None:
    event = {
        "Records": [
            _record("2", b"{oops"),
            _ride("10", 1),
            _record("3", "%%% not base64 %%%"),
            {"kinesis": {"sequenceNumber": "4"}},
            "not a record",
            _ride("11", 2),
        ]
    }
    predictions, letters = Collect(), Collect()
    lines: list[str] = []
    response = LambdaBatch(stream_service, predictions, letters, lines.append).handle(event)
    assert response["batchItemFailures"] == []  # retrying poison can never succeed
    assert [p["prediction"]["ride_id"] for p in response["predictions"]] == [1, 2]
    assert sorted(r.source_sequence or "-" for r in letters.records) == ["-", "2", "3", "4"]
    errors = [json.loads(r.data)["error"] for r in letters.records]
    assert sum("not valid JSON" in e for e in errors) == 1
    assert sum("no base64 Kinesis data" in e for e in errors) == 3
    assert lines == ["1 records without a usable sequence number in this batch"]


def test_only_records_whose_put_failed_are_item_failures(stream_service: StreamService) -> None:
    client = FailingEntries({"2", "4"})  # the predictions of rides 2 and 4 (ride_id = key)
    event = {"Records": [_ride(str(10 + i), i) for i in range(1, 6)]}
    batch = LambdaBatch(stream_service, _put(client), Collect(), lambda line: None)
    response = batch.handle(event)
    assert response["batchItemFailures"] == [{"itemIdentifier": "12"}, {"itemIdentifier": "14"}]
    assert client.calls == 3  # the first put, then only the failed entries, twice


def test_a_failed_dead_letter_put_is_retried_too(stream_service: StreamService) -> None:
    letters = FailingEntries({"7"})  # a dead letter's key is its sequence number
    event = {"Records": [_record("7", b"{oops"), _ride("8", 1)]}
    batch = LambdaBatch(stream_service, Collect(), _put(letters), lambda line: None)
    assert batch.handle(event)["batchItemFailures"] == [{"itemIdentifier": "7"}]


def test_a_failed_put_of_a_record_without_sequence_fails_the_whole_batch(
    stream_service: StreamService,
) -> None:
    client = FailingEntries({"1"})
    event = {"Records": [_ride(None, 1), _ride("9", 2)]}
    batch = LambdaBatch(stream_service, _put(client), Collect(), lambda line: None)
    with pytest.raises(StreamError, match="whole batch"):
        batch.handle(event)


def test_malformed_events_have_nothing_to_do(stream_service: StreamService) -> None:
    for event in (None, {}, {"Records": "x"}, []):
        letters = Collect()
        response = LambdaBatch(stream_service, Collect(), letters, lambda line: None).handle(event)
        assert response == {"predictions": [], "batchItemFailures": []}
        assert letters.records == []


@pytest.mark.integration
def test_on_moto_poison_lands_in_the_dlq_and_a_missing_output_fails_the_batch(
    kinesis: Any, streams: StreamSettings, stream_service: StreamService
) -> None:
    def put_to(stream: str) -> Any:
        return lambda records: put_records_reporting(kinesis, stream, records)

    batch = LambdaBatch(
        stream_service,
        put_to(streams.output_stream),
        put_to(streams.dlq_stream),
        lambda line: None,
    )
    event = {"Records": [_record("5", b"not json"), _ride("6", 61)]}
    assert batch.handle(event)["batchItemFailures"] == []
    assert list(predictions_by_id(kinesis, streams.output_stream)) == [61]
    (letter,) = dead_letters(kinesis, streams.dlq_stream)
    assert letter["payload"] == "not json"
    assert letter["source"]["sequence_number"] == "5"

    kinesis.delete_stream(StreamName=streams.output_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=streams.output_stream)
    with pytest.raises(StreamError, match="does not exist"):  # Lambda retries every record
        batch.handle({"Records": [_ride("7", 71)]})
