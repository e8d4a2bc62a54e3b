"""``deploy stream consume --trust-pickle``: a trusted bare pickle scores on a real moto server."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import predictions_by_id, ride_bytes

from deploy_modes.core.scoring import ModelService
from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.stream.settings import StreamSettings

RIDES = [(10, 50, 4.5), (130, 205, 3.66), (1, 265, 0.3), (74, 75, 12.0)]


@pytest.mark.integration
def test_consume_scores_a_trusted_pickle(
    streams: StreamSettings,
    kinesis: Any,
    bare_pickle: Path,
    model_service: ModelService,
    tmp_path: Path,
) -> None:
    from deploy_modes.stream.rides import send_rides

    deploy = str(Path(sys.executable).parent / "deploy")
    args = [deploy, "stream", "consume", "--endpoint-url", str(streams.endpoint_url)]
    args += ["--model", str(bare_pickle), "--trust-pickle"]
    env = {
        "DEPLOY_TRUST_PICKLE": "0",  # only the option grants it
        "DEPLOY_STREAM_INPUT_STREAM": streams.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": streams.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": streams.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(tmp_path / "c.sqlite"),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "consume.log"
    with ManagedProcess("deploy stream consume", args, env=env, log_path=log) as process:
        send_rides(kinesis, streams.input_stream, [ride_bytes(*r, i) for i, r in enumerate(RIDES)])
        deadline = time.monotonic() + 60
        while len(found := predictions_by_id(kinesis, streams.output_stream)) < len(RIDES):
            assert process.poll() is None, process.tail()
            assert time.monotonic() < deadline, process.tail()
            time.sleep(0.2)
        assert process.stop(sig=signal.SIGTERM) == 0
    for i, (pu, do, distance) in enumerate(RIDES):
        ride = {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance}
        assert found[i] == [pytest.approx(model_service.predict_one(ride), abs=1e-9)]
    assert "Traceback" not in log.read_text()
