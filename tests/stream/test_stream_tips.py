"""Two models, one ride stream: the tip consumer beside the duration consumer (the course's
1-to-many example), each with its own output stream, event field and checkpoints."""

from __future__ import annotations

import copy
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import COURSE_EVENT, ride_bytes

from deploy_modes.core.artifact import LoadedModel, load_model
from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.naming import EVENT_FIELDS, MODEL_NAME, TARGETS, TIP_MODEL_NAME
from deploy_modes.core.schema import PredictionEvent, TipPredictionEvent
from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.stream.events import prediction_event
from deploy_modes.stream.kinesis import ensure_streams
from deploy_modes.stream.lambda_batch import from_environment
from deploy_modes.stream.rides import generated_rides, read_predictions, send_rides
from deploy_modes.stream.service import InputRecord, StreamService
from deploy_modes.stream.settings import StreamSettings

RIDES = [(130, 205, 3.66), (74, 75, 1.2), (1, 265, 0.0)]


@pytest.fixture(scope="module")
def tip_service(tip_model_dir: Path) -> ModelService:
    """Return the tip model's service as the stream loads it (every target accepted)."""
    return ModelService(load_model(tip_model_dir), EVENT_FIELDS)


def _records() -> list[InputRecord]:
    return [InputRecord(ride_bytes(*ride, i), str(i), "s") for i, ride in enumerate(RIDES)]


def test_the_tip_event_names_its_model_and_target(tip_service: ModelService) -> None:
    result = StreamService(tip_service).process(_records())
    assert not result.dead_letters
    for event, (pu, do, distance) in zip(result.predictions, RIDES, strict=True):
        assert TipPredictionEvent.model_validate(event, strict=True).model_dump() == event
        assert event["model"] == TIP_MODEL_NAME
        assert set(event["prediction"]) == {"tip_amount", "ride_id"}  # never ride_duration
        expected = tip_service.predict_arrays([pu], [do], [distance])[0]
        assert event["prediction"]["tip_amount"] == expected


def test_the_duration_event_stays_exactly_the_courses(stream_service: StreamService) -> None:
    event = stream_service.process(_records()).predictions[0]
    assert PredictionEvent.model_validate(event, strict=True).model_dump() == event
    assert list(event) == ["model", "version", "prediction"]
    assert list(event["prediction"]) == ["ride_duration", "ride_id"]
    assert event["model"] == MODEL_NAME
    assert prediction_event("m", "v", 1.5, 7) == {
        "model": "m",
        "version": "v",
        "prediction": {"ride_duration": 1.5, "ride_id": 7},
    }


def test_a_target_no_event_names_is_refused(tip_model_dir: Path) -> None:
    loaded = load_model(tip_model_dir)
    manifest = {**loaded.manifest, "features": {**loaded.manifest["features"], "target": "fare"}}
    odd = ModelService(LoadedModel(loaded.pipeline, manifest, "odd-model"), ("fare",))
    with pytest.raises(ModelLoadError, match="odd-model predicts fare, which no prediction event"):
        StreamService(odd)


def _consumer(
    settings: StreamSettings, name: str, model: Path, output: str, log: Path
) -> ManagedProcess:
    deploy = str(Path(sys.executable).parent / "deploy")  # the venv's console script
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": str(settings.endpoint_url),
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        # One checkpoint file for both: the rows are keyed by consumer name.
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        "PYTHONUNBUFFERED": "1",
    }
    command = [deploy, "stream", "consume", "--consumer-name", name, "--model", str(model)]
    return ManagedProcess(name, [*command, "--output-stream", output], env=env, log_path=log)


def _events(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.items() if k != "_arrived"} for e in read_predictions(kinesis, stream)
    ]


def _wait_all(
    kinesis: Any, streams: dict[str, str], count: int, procs: list[ManagedProcess]
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(len(_events(kinesis, s)) >= count for s in streams.values()):
            return
        for process in procs:
            assert process.poll() is None, f"{process.name} exited early:{process.tail()}"
        time.sleep(0.3)
    pytest.fail("timed out: " + "; ".join(p.tail(5) for p in procs))


@pytest.mark.integration
def test_duration_and_tip_consumers_each_predict_every_ride_once(
    moto_server: Emulator,
    streams: StreamSettings,
    kinesis: Any,
    model_dir: Path,
    tip_model_dir: Path,
    tmp_path: Path,
) -> None:
    tips = f"tip_predictions_{uuid.uuid4().hex[:8]}"
    ensure_streams(kinesis, [tips], streams.shards, say=lambda message: None)
    outputs = {"durations": streams.output_stream, "tips": tips}
    models = {"durations": model_dir, "tips": tip_model_dir}
    rides = generated_rides(400, seed=13)
    send_rides(kinesis, streams.input_stream, rides)
    procs = [
        _consumer(streams, name, models[name], outputs[name], tmp_path / f"{name}.log")
        for name in outputs
    ]
    try:
        _wait_all(kinesis, outputs, len(rides), procs)
        more = generated_rides(100, seed=14, first_id=401)  # read live, by both
        send_rides(kinesis, streams.input_stream, more)
        _wait_all(kinesis, outputs, len(rides) + len(more), procs)
    finally:
        codes = [p.stop(timeout=45, sig=signal.SIGTERM) for p in procs]
    assert codes == [0, 0]
    every = {ride["ride_id"]: ride["ride"] for ride in [*rides, *more]}

    duration_service = ModelService(load_model(model_dir))
    tip_service = ModelService(load_model(tip_model_dir), TARGETS)
    for name, service, field, model_name in (
        ("durations", duration_service, "ride_duration", MODEL_NAME),
        ("tips", tip_service, "tip_amount", TIP_MODEL_NAME),
    ):
        events = _events(kinesis, outputs[name])
        counts = Counter(e["prediction"]["ride_id"] for e in events)
        assert sorted(counts) == sorted(every) and set(counts.values()) == {1}, name
        assert {e["model"] for e in events} == {model_name}
        assert {e["version"] for e in events} == {service.version}
        for event in events:
            ride = every[event["prediction"]["ride_id"]]
            assert set(event["prediction"]) == {field, "ride_id"}
            expected = service.predict_one(ride)
            assert event["prediction"][field] == pytest.approx(expected, abs=1e-9)

    with sqlite3.connect(streams.checkpoint_path) as db:
        rows = db.execute("select consumer, count(*) from checkpoints group by consumer").fetchall()
    assert dict(rows) == {"durations": streams.shards, "tips": streams.shards}


def test_the_lambda_serves_a_tip_model_under_its_own_field(
    tip_model_dir: Path, tip_service: ModelService
) -> None:
    handler = from_environment({"MODEL_LOCATION": str(tip_model_dir), "TEST_RUN": "True"})
    response = handler.handle(copy.deepcopy(COURSE_EVENT))
    expected = tip_service.predict_arrays([130], [205], [3.66])[0]
    assert response == {
        "predictions": [
            {
                "model": TIP_MODEL_NAME,
                "version": tip_service.version,
                "prediction": {"tip_amount": expected, "ride_id": 256},
            }
        ],
        "batchItemFailures": [],
    }
