"""``deploy stream consume`` as a real process: SIGKILL midway loses nothing; SIGTERM is clean."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import predictions_by_id

from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

BATCH = 50
RIDES = 3000


def _consumer_process(
    settings: StreamSettings, model_dir: Path, log: Path, name: str = "consumer"
) -> ManagedProcess:
    deploy = str(Path(sys.executable).parent / "deploy")  # the venv's console script
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": str(settings.endpoint_url),
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": settings.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
        "DEPLOY_STREAM_BATCH_SIZE": str(BATCH),
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        # The restarted process is a new lease owner: it waits for the killed one's leases
        # to expire, so keep that wait short next to the test's time budget.
        "DEPLOY_STREAM_LEASE_TIMEOUT": "2",
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }
    return ManagedProcess(name, [deploy, "stream", "consume"], env=env, log_path=log)


def _wait_for(condition: Any, timeout: float, what: str, process: ManagedProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"consumer exited early:{process.tail()}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:{process.tail()}")


def test_sigkill_midway_then_restart_loses_no_ride(
    moto_server: Emulator, streams: StreamSettings, kinesis: Any, model_dir: Path, tmp_path: Path
) -> None:
    rides = generated_rides(RIDES, seed=21)
    # Rides keep arriving while the consumer runs, so the kill lands mid-stream.
    sending = threading.Thread(
        target=send_rides, args=(kinesis, streams.input_stream, rides, 600.0)
    )
    first = _consumer_process(streams, model_dir, tmp_path / "first.log")
    sending.start()
    try:
        _wait_for(
            lambda: len(predictions_by_id(kinesis, streams.output_stream)) >= 600,
            60,
            "the first predictions",
            first,
        )
        first.kill()  # SIGKILL: no chance to finish the batch or checkpoint
    finally:
        sending.join(60)
    before_restart = predictions_by_id(kinesis, streams.output_stream)
    assert 0 < len(before_restart) < RIDES  # the kill really came midway

    second = _consumer_process(streams, model_dir, tmp_path / "second.log", "restarted")
    try:
        _wait_for(
            lambda: len(predictions_by_id(kinesis, streams.output_stream)) >= RIDES,
            90,
            "every ride",
            second,
        )
    finally:
        # The grace covers one Kinesis call in flight (10 s read timeout) on a loaded moto.
        code = second.stop(timeout=45, sig=signal.SIGTERM)
    assert code == 0  # graceful: finished its batch, checkpointed, exited
    assert "stopped" in second.tail(5)

    found = predictions_by_id(kinesis, streams.output_stream)
    assert sorted(found) == list(range(1, RIDES + 1))  # none lost
    repeated = sum(len(durations) - 1 for durations in found.values())
    assert repeated <= BATCH  # at most the batch in flight at the kill
    assert all(len(set(durations)) == 1 for durations in found.values())


def test_sigterm_checkpoints_so_a_restart_repeats_nothing(
    moto_server: Emulator, streams: StreamSettings, kinesis: Any, model_dir: Path, tmp_path: Path
) -> None:
    send_rides(kinesis, streams.input_stream, generated_rides(400, seed=4))
    first = _consumer_process(streams, model_dir, tmp_path / "first.log")
    try:
        _wait_for(
            lambda: len(predictions_by_id(kinesis, streams.output_stream)) >= 400,
            60,
            "all 400 predictions",
            first,
        )
    finally:
        assert first.stop(sig=signal.SIGTERM) == 0
    send_rides(kinesis, streams.input_stream, generated_rides(10, seed=4, first_id=5001))
    second = _consumer_process(streams, model_dir, tmp_path / "second.log")
    try:
        _wait_for(
            lambda: len(predictions_by_id(kinesis, streams.output_stream)) >= 410,
            60,
            "the 10 new predictions",
            second,
        )
        time.sleep(1.0)  # give a wrongly rewound consumer the chance to repeat old rides
    finally:
        assert second.stop(sig=signal.SIGTERM) == 0
    found = predictions_by_id(kinesis, streams.output_stream)
    assert len(found) == 410
    assert all(len(durations) == 1 for durations in found.values())
