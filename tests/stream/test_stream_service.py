"""Unit tests for the stream service and the Lambda event handling (no AWS at all)."""

from __future__ import annotations

import base64
import copy
import json

from stream_helpers import COURSE_EVENT, ride_bytes

from deploy_modes.core.scoring import ModelService
from deploy_modes.stream.service import InputRecord, OutputRecord, StreamService


def test_batch_predictions_equal_the_core_model(
    stream_service: StreamService, model_service: ModelService
) -> None:
    rides = [(130, 205, 3.66), (1, 265, 0.0), (74, 75, 500.0), (42, 42, 1.5)]
    records = [InputRecord(ride_bytes(*ride, i), str(i), "s") for i, ride in enumerate(rides)]
    result = stream_service.process(records)
    assert not result.dead_letters
    assert [p["prediction"]["ride_id"] for p in result.predictions] == [0, 1, 2, 3]
    for prediction, (pu, do, distance) in zip(result.predictions, rides, strict=True):
        expected = model_service.predict_one(
            {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance}
        )
        assert prediction["prediction"]["ride_duration"] == expected
        assert prediction["version"] == model_service.version
    assert [o.partition_key for o in result.outputs] == ["0", "1", "2", "3"]
    assert json.loads(result.outputs[0].data) == result.predictions[0]


def test_poison_records_become_dead_letters_and_the_rest_are_predicted(
    stream_service: StreamService,
) -> None:
    records = [
        InputRecord(ride_bytes(130, 205, 3.66, 1), "1", "s"),
        InputRecord(b"not json", "2", "s"),
        InputRecord(ride_bytes(130, 999, 3.66, 3), "3", "s"),
        InputRecord(ride_bytes(130, 205, 3.66, 4), "4", "s"),
    ]
    result = stream_service.process(records)
    assert [p["prediction"]["ride_id"] for p in result.predictions] == [1, 4]
    assert [r.sequence for r in result.poison] == ["2", "3"]
    letters = [json.loads(d.data) for d in result.dead_letters]
    assert letters[0]["payload"] == "not json"
    assert letters[1]["field"] == "DOLocationID"
    assert letters[1]["source"]["sequence_number"] == "3"


def test_empty_batch_is_empty(stream_service: StreamService) -> None:
    result = stream_service.process([])
    assert result.predictions == result.outputs == result.dead_letters == []


def test_lambda_course_event_returns_the_course_predictions(
    stream_service: StreamService, model_service: ModelService
) -> None:
    put: list[list[OutputRecord]] = []
    response = stream_service.handle_lambda_event(COURSE_EVENT, put.append)
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
    assert [[r.partition_key for r in batch] for batch in put] == [["256"]]


def test_lambda_poison_records_are_item_failures_not_a_failed_batch(
    stream_service: StreamService,
) -> None:
    event = copy.deepcopy(COURSE_EVENT)
    good = event["Records"][0]
    bad_json = copy.deepcopy(good)
    bad_json["kinesis"]["sequenceNumber"] = "2"
    bad_json["kinesis"]["data"] = base64.b64encode(b"{oops").decode()
    bad_base64 = copy.deepcopy(good)
    bad_base64["kinesis"]["sequenceNumber"] = "3"
    bad_base64["kinesis"]["data"] = "%%% not base64 %%%"
    no_data = {"kinesis": {"sequenceNumber": "4"}}
    event["Records"] = [bad_json, good, bad_base64, no_data, "not a record"]
    response = stream_service.handle_lambda_event(event)
    assert [p["prediction"]["ride_id"] for p in response["predictions"]] == [256]
    failed = sorted(f["itemIdentifier"] for f in response["batchItemFailures"])
    assert failed == ["2", "3", "4"]


def test_lambda_malformed_events_return_nothing_to_do(stream_service: StreamService) -> None:
    for event in (None, {}, {"Records": "x"}, [], {"Records": [None]}):
        assert stream_service.handle_lambda_event(event) == {
            "predictions": [],
            "batchItemFailures": [],
        }
