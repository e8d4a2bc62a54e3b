"""Outages on the real moto server: a briefly missing output stream, an emulator that dies.

Every ride must still arrive, counted once in the stats, in batches of the configured size;
the log says once that Kinesis is failing and once that it recovered; the consumer waits a
bounded time at start, and exits non-zero when stopped while failing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import MakeConsumer, predictions_by_id

from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator, ensure_emulator
from deploy_modes.launch.processes import ManagedProcess, free_port
from deploy_modes.stream.kinesis import ensure_streams
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

DEPLOY = str(Path(sys.executable).parent / "deploy")  # the venv's console script


@pytest.mark.parametrize("shards", [1, 2])
def test_latest_consumer_rereads_a_failed_batch_it_never_checkpointed(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer, shards: int
) -> None:
    """LATEST means "since the consumer started", also for a shard reopened after a failure.

    Kinesis's own LATEST, asked again when the failed batch's shard is reopened without a
    checkpoint, would point past that batch and skip it for good.
    """
    settings: StreamSettings = make_streams(shards).model_copy(update={"start_position": "LATEST"})
    send_rides(kinesis, settings.input_stream, generated_rides(30, seed=7))  # before: not read
    time.sleep(2.5)  # moto's arrival stamps have millisecond precision: keep the two apart
    consumer, lines = make_consumer(settings)
    assert consumer.poll_once() == 0
    fresh = generated_rides(100, seed=8, first_id=1001)
    send_rides(kinesis, settings.input_stream, fresh)
    kinesis.delete_stream(StreamName=settings.output_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=settings.output_stream)
    assert consumer.poll_once() == 0  # read the 100 rides, the put failed
    assert consumer.failing is not None
    ensure_streams(kinesis, [settings.output_stream], 1, say=lambda message: None)
    while consumer.poll_once():
        pass
    assert consumer.failing is None
    delivered = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(delivered) == sorted(ride["ride_id"] for ride in fresh)
    assert any("at LATEST (every record that arrived since" in line for line in lines)


def test_output_stream_briefly_missing_then_back_loses_and_repeats_nothing(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    settings: StreamSettings = make_streams(4).model_copy(update={"batch_size": 40})
    send_rides(kinesis, settings.input_stream, generated_rides(400, seed=31))
    consumer, lines = make_consumer(settings)
    assert consumer.poll_once() == 40  # 10 from each shard
    assert consumer.poll_once() == 40
    delivered_before = predictions_by_id(kinesis, settings.output_stream)
    assert len(delivered_before) == 80

    kinesis.delete_stream(StreamName=settings.output_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=settings.output_stream)
    assert consumer.poll_once() == 0  # read 40 rides, the put failed: nothing checkpointed
    assert consumer.poll_once() == 0
    assert consumer.failing is not None and "does not exist" in consumer.failing
    assert consumer.stats.errors == 2
    assert consumer.stats.records == 80  # failed batches are not counted

    ensure_streams(kinesis, [settings.output_stream], 2, say=lambda message: None)
    while consumer.poll_once():
        pass
    assert consumer.failing is None
    delivered_after = predictions_by_id(kinesis, settings.output_stream)
    # The batch read before each failed put is read again from the checkpoints: a reader
    # that kept its position would have skipped it for good.
    assert sorted(delivered_before | delivered_after) == list(range(1, 401))
    assert all(len(durations) == 1 for durations in delivered_after.values())
    assert not set(delivered_before) & set(delivered_after)  # the acknowledged did not repeat
    assert consumer.stats.records == consumer.stats.predictions == 400
    assert consumer.stats.errors == 2
    # Full batches: a per-poll limit of 1 would need 400 batches, not about 10.
    assert consumer.stats.largest_batch == 40
    assert consumer.stats.batches <= 20
    assert sum("writing failed" in line for line in lines) == 1  # one line per state change
    assert sum("recovered after" in line for line in lines) == 1


def test_consume_against_an_endpoint_that_does_not_answer_fails_in_one_line(
    tmp_path: Path, model_dir: Path
) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DEPLOY_STREAM_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(tmp_path / "c.sqlite"),
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    result = subprocess.run(
        [DEPLOY, "stream", "consume", "--startup-timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "did not answer within 2 s" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[Callable[[], Emulator]]:
    """Return a function (re)starting a moto server of this test's own on one fixed port."""
    port = free_port()
    started: list[Emulator] = []

    def start() -> Emulator:
        emulator = ensure_emulator(port=port, log_dir=tmp_path / f"moto-{len(started)}")
        assert emulator.started_here
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


def _wait_for(condition: Callable[[], bool], what: str, process: ManagedProcess) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        assert process.poll() is None, f"consumer exited early:{process.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:{process.tail(40)}")
        time.sleep(0.2)


def test_emulator_killed_and_restarted_fresh_every_new_ride_is_predicted(
    own_emulator: Callable[[], Emulator], tmp_path: Path, model_dir: Path
) -> None:
    emulator = own_emulator()
    names = ["in_rides", "out_predictions", "dlq"]
    kinesis = aws_client("kinesis", emulator.url)
    ensure_streams(kinesis, names, 2, say=lambda message: None)
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": emulator.url,
        "DEPLOY_STREAM_INPUT_STREAM": names[0],
        "DEPLOY_STREAM_OUTPUT_STREAM": names[1],
        "DEPLOY_STREAM_DLQ_STREAM": names[2],
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(tmp_path / "checkpoints.sqlite"),
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "consumer.log"
    consumer = ManagedProcess("consumer", [DEPLOY, "stream", "consume"], env=env, log_path=log)
    try:
        send_rides(kinesis, names[0], generated_rides(300, seed=41))
        _wait_for(lambda: len(predictions_by_id(kinesis, names[1])) >= 300, "300", consumer)

        emulator.process.kill()  # type: ignore[union-attr]  # SIGKILL: its streams are gone
        _wait_for(lambda: " failed: " in log.read_text(), "the failure line", consumer)
        time.sleep(3)  # several retries while it is down
        emulator = own_emulator()  # fresh state on the same port
        kinesis = aws_client("kinesis", emulator.url)
        ensure_streams(kinesis, names, 2, say=lambda message: None)
        # Fewer rides than before: every new sequence number is below the old checkpoints.
        send_rides(kinesis, names[0], generated_rides(100, seed=42, first_id=1001))
        _wait_for(lambda: len(predictions_by_id(kinesis, names[1])) >= 100, "100", consumer)
        found = predictions_by_id(kinesis, names[1])
        assert sorted(found) == list(range(1001, 1101))
        assert all(len(durations) == 1 for durations in found.values())

        # "failed: " is the failure-state line; "recovered ... (5 failed attempts)" is not.
        # The first outage may have said it more than once (a shard's read and the listing).
        before = log.read_text().count(" failed: ")
        emulator.process.kill()  # type: ignore[union-attr]
        _wait_for(
            lambda: log.read_text().count(" failed: ") > before, "the second outage", consumer
        )
        code = consumer.stop(sig=signal.SIGINT)  # Ctrl-C while failing
    finally:
        consumer.stop()
    text = log.read_text()
    assert code == 1, text
    assert "stopped while failing" in text
    assert "earlier incarnation" in text  # said why the shards start from TRIM_HORIZON
    assert "Traceback" not in text
    failing_lines = [line for line in text.splitlines() if " failed: " in line]
    errors = int(text.split(" errors")[-2].rsplit(" ", 1)[-1])  # from the "stopped:" line
    # One line per state change (down, stream missing, down again), not one per retry:
    # fewer lines than errors, and no line repeats the reason of the failure state it is in.
    assert len(failing_lines) < errors, text
    state: str | None = None
    for line in text.splitlines():
        if "recovered after" in line:
            state = None
        elif " failed: " in line:
            reason = line.split(" failed: ", 1)[1]
            assert reason != state, text
            state = reason
    assert text.count("recovered after") == 1
