"""The stream mode measured: rides put on Kinesis, predictions read back from the output stream.

The helpers here serve both runtimes: locally a moto server and ``deploy stream consume``,
in compose the stack's emulator and consumer container.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.compare.local import READY_TIMEOUT, deploy_args, stopped
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.result import ModeResult, ProgressFactory, Say
from deploy_modes.compare.rides import RideSet
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess, free_port

__all__ = [
    "STALL_TIMEOUT",
    "LocalStream",
    "OutputReader",
    "collect_stream",
    "send_and_collect",
    "stream_result",
    "wait_for_probe",
]

STALL_TIMEOUT = 60.0  # the stream runner gives up when no prediction arrives for this long
_PROBE_ID = "compare-probe"


@dataclass
class LocalStream:
    """Start moto and ``deploy stream consume``, put every ride, read every prediction back."""

    model: str
    workdir: Path
    log_dir: Path
    say: Say
    progress: ProgressFactory
    shards: int = 2
    mode: str = "stream"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the child

    def run(self, rides: RideSet) -> ModeResult:
        """Run the consumer against a fresh moto server; both are stopped whatever happens."""
        from deploy_modes.launch.emulator import ensure_emulator

        self.say("stream: starting a moto server (the local Kinesis) on a free port")
        emulator = None
        emulator_memory: PeakMemory | None = None
        try:
            t0 = time.perf_counter()
            emulator = ensure_emulator(port=free_port(), log_dir=self.log_dir)
            emulator_startup = time.perf_counter() - t0
            if emulator.process is not None:
                emulator_memory = PeakMemory(emulator.process.pid)
            result = self._with(emulator, rides)
        finally:
            emulator_peak = emulator_memory.stop() if emulator_memory is not None else 0
            if emulator is not None:
                emulator.stop()
        result.details.update(
            emulator_startup_s=emulator_startup, emulator_peak_rss_bytes=emulator_peak
        )
        return result

    def _with(self, emulator: Emulator, rides: RideSet) -> ModeResult:
        from deploy_modes.stream.kinesis import ensure_streams

        suffix = uuid.uuid4().hex[:8]
        names = {
            "DEPLOY_STREAM_INPUT_STREAM": f"compare_rides_{suffix}",
            "DEPLOY_STREAM_OUTPUT_STREAM": f"compare_predictions_{suffix}",
            "DEPLOY_STREAM_DLQ_STREAM": f"compare_dlq_{suffix}",
        }
        input_stream = names["DEPLOY_STREAM_INPUT_STREAM"]
        kinesis = emulator.client("kinesis")  # the dummy keys go to the client, not os.environ
        ensure_streams(kinesis, list(names.values()), self.shards, say=lambda _m: None)
        env = {
            **emulator.env(),
            **names,
            "DEPLOY_STREAM_CHECKPOINT_PATH": str(self.workdir / f"checkpoints-{suffix}.sqlite"),
            "PYTHONUNBUFFERED": "1",
            "DEPLOY_STREAM_RECORD": "0",  # its log is the report's stream.log, kept apart
            **(self.trust.env() if self.trust else {}),
        }
        args = [
            *deploy_args(),
            *("stream", "consume", "--consumer-name", f"compare-{suffix}"),
            *("--endpoint-url", emulator.url, "--model", self.model),
        ]
        log = self.log_dir / "stream.log"
        log.unlink(missing_ok=True)
        self.say(f"stream: starting the consumer ({self.shards} shards)")
        process: ManagedProcess | None = None
        memory: PeakMemory | None = None
        output = OutputReader(kinesis, names["DEPLOY_STREAM_OUTPUT_STREAM"])

        def dead() -> str | None:
            if process is None or process.poll() is None:
                return None
            return f"the stream consumer exited with code {process.poll()}" + process.tail(10)

        try:
            started = time.perf_counter()
            process = ManagedProcess("deploy stream consume", args, env=env, log_path=log)
            memory = PeakMemory(process.pid)
            wait_for_probe(kinesis, input_stream, rides, output, dead)
            startup = time.perf_counter() - started
            wall = send_and_collect(kinesis, input_stream, rides, output, dead, self.progress)
            memory.sample()
        finally:
            peak = stopped(process, memory)
        return stream_result(
            kinesis,
            (input_stream, names["DEPLOY_STREAM_OUTPUT_STREAM"], names["DEPLOY_STREAM_DLQ_STREAM"]),
            rides,
            startup,
            wall,
            peak,
            self.shards,
        )


def stream_result(
    kinesis: Any,
    streams: tuple[str, str, str],
    rides: RideSet,
    startup: float,
    wall: float,
    peak: int,
    shards: int,
) -> ModeResult:
    """Read the input, output and dead-letter ``streams`` back into the stream mode's result."""
    predictions, latencies, dead_letters = collect_stream(kinesis, *streams)
    errors = [f"{dead_letters} rides went to the dead-letter stream"] if dead_letters else []
    return ModeResult(
        mode="stream",
        rides=len(rides),
        startup_s=startup,
        wall_s=wall,
        latencies_s=latencies,
        peak_rss_bytes=peak,
        predictions=predictions,
        errors=errors,
        details={"shards": shards, "dead_letters": dead_letters},
    )


def wait_for_probe(
    kinesis: Any,
    input_stream: str,
    rides: RideSet,
    output: OutputReader,
    dead: Callable[[], str | None],
) -> None:
    """Put one probe ride and wait for its prediction: the consumer is ready (or raise)."""
    probe = {"ride": rides.event(0)["ride"], "ride_id": _PROBE_ID}
    _put(kinesis, input_stream, [probe])
    deadline = time.perf_counter() + READY_TIMEOUT
    while _PROBE_ID not in output.poll():
        why = dead()
        if why is not None:
            raise DeployError(why)
        if time.perf_counter() > deadline:
            raise DeployError(f"the stream consumer predicted nothing within {READY_TIMEOUT:.0f}s")
        time.sleep(0.05)


def collect_stream(
    kinesis: Any, input_stream: str, output_stream: str, dlq_stream: str
) -> tuple[dict[str, float], np.ndarray, int]:
    """Return predictions by ride_id, put-to-prediction latencies and the dead-letter count."""
    from deploy_modes.stream.kinesis import read_all

    # Latency per ride: moto's arrival stamp on the output record minus the one on the input.
    put_at = {
        str(json.loads(record.data)["ride_id"]): raw["ApproximateArrivalTimestamp"].timestamp()
        for record, raw in read_all(kinesis, input_stream)
    }
    latencies = []
    predictions: dict[str, float] = {}
    for record, raw in read_all(kinesis, output_stream):
        event = json.loads(record.data)["prediction"]
        ride_id = str(event["ride_id"])
        if ride_id == _PROBE_ID or ride_id not in put_at or ride_id in predictions:
            continue  # a redelivered ride counts once, at its first prediction
        predictions[ride_id] = float(event["ride_duration"])
        latencies.append(raw["ApproximateArrivalTimestamp"].timestamp() - put_at[ride_id])
    dead = sum(1 for _ in read_all(kinesis, dlq_stream))
    return predictions, np.asarray(latencies, dtype="float64"), dead


def _put(kinesis: Any, stream: str, events: list[dict[str, Any]]) -> None:
    from deploy_modes.stream.rides import send_rides

    send_rides(kinesis, stream, events)


def send_and_collect(
    kinesis: Any,
    input_stream: str,
    rides: RideSet,
    output: OutputReader,
    dead: Callable[[], str | None],
    progress: ProgressFactory,
) -> float:
    """Put every ride at once, wait for every prediction; return first put to last prediction."""
    from deploy_modes.stream.rides import send_rides

    events = [rides.event(i) for i in range(len(rides))]
    wanted = set(rides.ride_ids)
    seen: set[str] = set()
    with progress(f"stream: put + predict x{len(rides):,}", len(rides)) as advance:
        started = time.perf_counter()
        send_rides(kinesis, input_stream, events)
        last_new = time.perf_counter()
        finished = started
        while len(seen) < len(wanted):
            new = (output.poll() & wanted) - seen
            now = time.perf_counter()
            if new:
                seen |= new
                advance(len(new))
                last_new = finished = now
                continue
            why = dead()
            if why is not None:
                raise DeployError(why)
            if now - last_new > STALL_TIMEOUT:
                break  # the missing rides are reported as disagreements
            time.sleep(0.02)
    return max(finished - started, 1e-6)


class OutputReader:
    """Read new records from every shard of the output stream; return their ride_ids."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        from deploy_modes.stream.kinesis import ShardReader, list_shard_ids

        self.readers = [ShardReader(kinesis, stream, s) for s in list_shard_ids(kinesis, stream)]

    def poll(self) -> set[str]:
        """Return the ride_ids of the prediction events that arrived since the last call."""
        ids: set[str] = set()
        for reader in self.readers:
            for record in reader.read(10_000):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    ids.add(str(json.loads(record.data)["prediction"]["ride_id"]))
        return ids
