"""Unit tests for the stream service (no AWS at all)."""

from __future__ import annotations

import json

from stream_helpers import ride_bytes

from deploy_modes.core.scoring import ModelService
from deploy_modes.stream.service import InputRecord, StreamService


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
