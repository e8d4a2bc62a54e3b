"""The Lambda handler on the course's README test event, with and without TEST_RUN."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import COURSE_EVENT, dead_letters, predictions_by_id

from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.emulator import Emulator
from deploy_modes.stream import lambda_function
from deploy_modes.stream.settings import StreamSettings

_COURSE_RIDE = {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}


@pytest.fixture
def cold_start(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> Iterator[pytest.MonkeyPatch]:
    """Give every test a fresh cold start with MODEL_LOCATION pointing at the test model."""
    monkeypatch.setenv("MODEL_LOCATION", str(model_dir))
    for name in (
        "TEST_RUN",
        "PREDICTIONS_STREAM_NAME",
        "DEAD_LETTER_STREAM_NAME",
        "KINESIS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    lambda_function.reset()
    yield monkeypatch
    lambda_function.reset()


def test_course_event_with_test_run_predicts_without_putting(
    cold_start: pytest.MonkeyPatch, model_service: ModelService
) -> None:
    cold_start.setenv("TEST_RUN", "True")
    cold_start.setenv("KINESIS_ENDPOINT_URL", "http://127.0.0.1:9")  # would fail if used
    response = lambda_function.lambda_handler(copy.deepcopy(COURSE_EVENT), None)
    assert response == {
        "predictions": [
            {
                "model": "ride_duration_prediction_model",
                "version": model_service.version,
                "prediction": {
                    "ride_duration": model_service.predict_one(_COURSE_RIDE),
                    "ride_id": 256,
                },
            }
        ],
        "batchItemFailures": [],
    }


@pytest.mark.integration
def test_course_event_puts_the_prediction_on_the_output_stream(
    cold_start: pytest.MonkeyPatch,
    moto_server: Emulator,
    streams: StreamSettings,
    kinesis: Any,
    model_service: ModelService,
) -> None:
    cold_start.setenv("PREDICTIONS_STREAM_NAME", streams.output_stream)
    cold_start.setenv("KINESIS_ENDPOINT_URL", moto_server.url)
    response = lambda_function.lambda_handler(copy.deepcopy(COURSE_EVENT), None)
    assert [p["prediction"]["ride_id"] for p in response["predictions"]] == [256]
    # Warm invocation: the set-up is reused, the put happens again.
    lambda_function.lambda_handler(copy.deepcopy(COURSE_EVENT), None)
    found = predictions_by_id(kinesis, streams.output_stream)
    assert found == {256: [model_service.predict_one(_COURSE_RIDE)] * 2}


@pytest.mark.integration
def test_poison_record_goes_to_the_dead_letter_stream_and_the_good_one_is_put(
    cold_start: pytest.MonkeyPatch, moto_server: Emulator, streams: StreamSettings, kinesis: Any
) -> None:
    cold_start.setenv("PREDICTIONS_STREAM_NAME", streams.output_stream)
    cold_start.setenv("DEAD_LETTER_STREAM_NAME", streams.dlq_stream)
    cold_start.setenv("KINESIS_ENDPOINT_URL", moto_server.url)
    event = copy.deepcopy(COURSE_EVENT)
    poison = copy.deepcopy(event["Records"][0])
    poison["kinesis"]["sequenceNumber"] = "7"
    poison["kinesis"]["data"] = "bm90IGpzb24="  # "not json"
    event["Records"].insert(0, poison)
    response = lambda_function.lambda_handler(event, None)
    assert response["batchItemFailures"] == []  # Lambda must not retry poison forever
    assert list(predictions_by_id(kinesis, streams.output_stream)) == [256]
    (letter,) = dead_letters(kinesis, streams.dlq_stream)
    assert letter["payload"] == "not json"
    assert letter["source"]["sequence_number"] == "7"


def test_missing_model_fails_the_cold_start_clearly(
    cold_start: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cold_start.setenv("MODEL_LOCATION", str(tmp_path / "nope"))
    cold_start.setenv("TEST_RUN", "True")
    with pytest.raises(ModelLoadError):
        lambda_function.lambda_handler(COURSE_EVENT, None)


def test_handler_response_is_json_serialisable(cold_start: pytest.MonkeyPatch) -> None:
    cold_start.setenv("TEST_RUN", "True")
    json.dumps(lambda_function.lambda_handler(COURSE_EVENT, None), allow_nan=False)
