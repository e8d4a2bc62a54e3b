"""The stream lane: rides put on a local Kinesis, a consumer group predicting, answers read back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.lane import Answer, Tally
from deploy_modes.classroom.processes import deploy, memory_of, stop_all
from deploy_modes.classroom.rides import Ride
from deploy_modes.classroom.state import LaneState
from deploy_modes.launch.emulator import Emulator, ensure_emulator
from deploy_modes.launch.processes import ManagedProcess, free_port

__all__ = ["CONSUMER_NAME", "STREAMS", "StreamLane", "held_shards"]

STREAMS = ("classroom_rides", "classroom_predictions", "classroom_dlq")
CONSUMER_NAME = "classroom"
SHARDS = 4
LEASE_TIMEOUT = 5.0  # seconds before a dead consumer's shards are taken over
_PUT_EVERY = 0.1
_READ_EVERY = 0.2


def held_shards(log: str) -> set[str]:
    """Return the shards a consumer's log says it holds now (took, not since lost or released)."""
    held: set[str] = set()
    for line in log.splitlines():
        if " the lease of " not in line:
            continue
        shard = line.rsplit(" the lease of ", 1)[1].split()[0].rstrip(":")
        if ": took the lease of " in line:
            held.add(shard)
        elif ": lost the lease of " in line or ": released the lease of " in line:
            held.discard(shard)
    return held


class StreamLane:
    """A moto server, ``deploy stream consume`` processes sharing the shards through leases."""

    # What the consumers do after the emulator restart, in the scenario's words.
    AFTER_RESTART = (
        "The consumers' checkpoints named the old stream, so they said so and read the new "
        "stream from its start instead of skipping to the old positions"
    )

    def __init__(
        self, model: str, log_dir: Path, workdir: Path, clock: Callable[[], float], checker: Checker
    ) -> None:
        self.model = model
        self.log_dir = log_dir
        self.workdir = workdir
        self.clock = clock
        self.checker = checker
        self.port = free_port()
        self.emulator: Emulator | None = None
        self.consumers: list[ManagedProcess] = []
        self._consumer_count = 0
        self.tally = Tally("stream", "Stream", "rides put but not yet predicted")
        self.stop = threading.Event()
        self.paused = threading.Event()  # set: rides wait here instead of being put
        self.emulator_down = threading.Event()
        self._lock = threading.Lock()
        self._buffer: list[Ride] = []
        # Every ride not yet answered, buffered or put: registered before its put, so an answer
        # read back before the put's response was handled still finds its ride.
        self._rides: dict[int, Ride] = {}
        self.shard_of: dict[int, str] = {}
        self.put_per_shard: Counter[str] = Counter()
        self.answered_per_shard: Counter[str] = Counter()
        self._threads: list[threading.Thread] = []
        self._positions: dict[str, str] = {}  # output shard -> last sequence number read

    # -- the emulator and the streams --------------------------------------------------------

    def start_emulator(self) -> None:
        """Start moto on this lane's port and create the three streams."""
        from deploy_modes.stream.kinesis import ensure_streams

        self.emulator = ensure_emulator(port=self.port, log_dir=self.log_dir)
        ensure_streams(self.emulator.client("kinesis"), list(STREAMS), SHARDS, say=lambda _m: None)
        self._kinesis = self.emulator.client("kinesis")
        self._positions = {}
        self.emulator_down.clear()

    def stop_emulator(self) -> None:
        """Stop moto (its streams and records go with it: it keeps nothing on disk)."""
        self.emulator_down.set()
        if self.emulator is not None:
            self.emulator.stop()

    # -- consumers ----------------------------------------------------------------------------

    def consumer_env(self) -> dict[str, str]:
        assert self.emulator is not None
        return {
            **self.emulator.env(),
            "DEPLOY_STREAM_INPUT_STREAM": STREAMS[0],
            "DEPLOY_STREAM_OUTPUT_STREAM": STREAMS[1],
            "DEPLOY_STREAM_DLQ_STREAM": STREAMS[2],
            "DEPLOY_STREAM_CHECKPOINT_PATH": str(self.workdir / "stream" / "checkpoints.sqlite"),
            "DEPLOY_STREAM_POLL_INTERVAL": "0.1",
            "DEPLOY_STREAM_RECORD": "0",
        }

    def add_consumer(self, model: str | None = None) -> ManagedProcess:
        """Start one more consumer of the group (it takes its fair share of the shards)."""
        assert self.emulator is not None
        self._consumer_count += 1
        n = self._consumer_count
        args = [
            "stream",
            "consume",
            "--consumer-name",
            CONSUMER_NAME,
            "--endpoint-url",
            self.emulator.url,
        ]
        args += ["--model", model or self.model, "--lease-timeout", str(LEASE_TIMEOUT)]
        process = deploy(
            f"consumer {n}", args, self.consumer_env(), self.log_dir / f"consumer-{n}.log"
        )
        process.number = n  # type: ignore[attr-defined]
        self.consumers.append(process)
        return process

    def live_consumers(self) -> list[ManagedProcess]:
        return [p for p in self.consumers if p.poll() is None]

    def kill_consumer(self, process: ManagedProcess) -> None:
        """SIGKILL one consumer: no checkpoint, no lease released."""
        os.killpg(process.pid, signal.SIGKILL)
        process.popen.wait(timeout=10)

    def retire_consumer(self, process: ManagedProcess) -> None:
        """Stop one consumer gracefully: it finishes its batch, checkpoints, releases its leases."""
        process.stop(timeout=30, sig=signal.SIGTERM)

    def lease_owners(self) -> dict[str, int]:
        """Return which live consumer (by number) holds each shard, from their own log lines."""
        owners: dict[str, int] = {}
        for process in self.live_consumers():
            log = self.log_dir / f"consumer-{getattr(process, 'number', 0)}.log"
            text = log.read_text(errors="replace") if log.is_file() else ""
            for shard in held_shards(text):
                owners[shard] = int(getattr(process, "number", 0))
        return owners

    # -- rides in -----------------------------------------------------------------------------

    def start(self, consumers: int = 2) -> None:
        """Start the emulator, the consumers, and the put and read threads."""
        self.start_emulator()
        for _ in range(consumers):
            self.add_consumer()
        for target, name in ((self._put_loop, "stream-put"), (self._read_loop, "stream-read")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, rides: list[Ride]) -> None:
        """Queue rides for the next PutRecords."""
        self.tally.ride_in(len(rides))
        with self._lock:
            self._buffer.extend(rides)
            for ride in rides:
                self._rides[ride.ride_id] = ride

    def _put_loop(self) -> None:
        while not self.stop.wait(_PUT_EVERY):
            if self.paused.is_set() or self.emulator_down.is_set():
                continue
            with self._lock:
                batch = self._buffer[:500]
            if not batch:
                continue
            try:
                response = self._kinesis.put_records(
                    StreamName=STREAMS[0],
                    Records=[
                        {"Data": json.dumps(r.event()).encode(), "PartitionKey": str(r.ride_id)}
                        for r in batch
                    ],
                )
            except Exception as exc:  # down or restarting: the rides stay buffered, in order
                self.tally.error(f"PutRecords: {type(exc).__name__}: {exc}")
                time.sleep(0.5)
                continue
            stored = []
            for ride, entry in zip(batch, response["Records"], strict=True):
                if entry.get("ErrorCode"):
                    continue  # throttled: it stays in the buffer and goes next time
                stored.append(ride)
                self.shard_of[ride.ride_id] = entry["ShardId"]
                self.put_per_shard[entry["ShardId"]] += 1
            with self._lock:
                done = {r.ride_id for r in stored}
                self._buffer = [r for r in self._buffer if r.ride_id not in done]

    # -- answers out --------------------------------------------------------------------------

    def _read_loop(self) -> None:
        from deploy_modes.stream.kinesis import list_shard_ids

        iterators: dict[str, str | None] = {}
        while not self.stop.wait(_READ_EVERY):
            if self.emulator_down.is_set():
                iterators = {}
                continue
            try:
                if not iterators:
                    for shard in list_shard_ids(self._kinesis, STREAMS[1]):
                        iterators[shard] = self._iterator(shard)
                for shard, iterator in list(iterators.items()):
                    if iterator is None:
                        continue
                    response = self._kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                    iterators[shard] = response.get("NextShardIterator")
                    for record in response.get("Records", []):
                        self._positions[shard] = record["SequenceNumber"]
                        self._answer(record["Data"])
            except Exception as exc:  # the emulator went away: reopen from the last position
                iterators = {}
                if not self.emulator_down.is_set():
                    self.tally.error(f"reading predictions: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _iterator(self, shard: str) -> str:
        after = self._positions.get(shard)
        kwargs: dict[str, Any] = {"StreamName": STREAMS[1], "ShardId": shard}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "StartingSequenceNumber": after,
            }
        return str(self._kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _answer(self, data: bytes) -> None:
        event = json.loads(data)
        prediction = event["prediction"]
        ride_id = int(prediction["ride_id"])
        with self._lock:
            ride = self._rides.pop(ride_id, None)
        if ride is None:  # a second prediction of a ride (at-least-once) or a stranger
            self.tally.repeat(ride_id)
            return
        got = Answer(
            ride_id, float(prediction["ride_duration"]), str(event["version"]), self.clock()
        )
        self.answered_per_shard[self.shard_of.get(ride_id, "?")] += 1
        if self.tally.answer(got, ride.sent):
            self.checker.submit(self.tally, ride, got)

    # -- what the page shows ------------------------------------------------------------------

    def lag(self) -> dict[str, int]:
        """Return, per input shard, the rides put and not yet predicted."""
        with self._lock:
            waiting = Counter(
                self.shard_of[ride_id] for ride_id in self._rides if ride_id in self.shard_of
            )
        return {
            shard.replace("shardId-", "shard "): waiting.get(shard, 0)
            for shard in sorted(self.put_per_shard)
        }

    def unanswered(self) -> int:
        """Return the rides put and not yet predicted, plus those not yet put."""
        with self._lock:
            return len(self._rides)

    def buffered(self) -> int:
        with self._lock:
            return len(self._buffer)

    def state(self, now: float) -> LaneState:
        """Return the lane for the page."""
        lag = self.lag()
        backlog = self.unanswered()
        live = self.live_consumers()
        if self.emulator_down.is_set():
            status = ("down", f"the emulator is down: {self.buffered()} rides wait to be put")
        elif self.paused.is_set():
            status = ("busy", f"rides are held back: {self.buffered()} wait to be put")
        elif not live:
            status = ("down", "no consumer runs: the rides wait in the stream")
        elif backlog > 200:
            status = ("busy", f"{backlog} rides wait in the stream: the consumers catch up")
        else:
            status = ("ok", "rides are predicted as fast as they arrive")
        detail = f"{len(live)} consumers, {SHARDS} shards, {self.tally.duplicates} repeated answers"
        return self.tally.state(now, backlog, status, self.memory(), detail, lag)

    def memory(self) -> tuple[int, int]:
        """Return the summed RSS and process count of the live consumers and the emulator."""
        processes = self.live_consumers()
        if self.emulator is not None and self.emulator.process is not None:
            processes.append(self.emulator.process)
        return memory_of(processes)

    def close(self) -> None:
        """Stop the threads, the consumers and the emulator."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        stop_all(self.consumers)
        if self.emulator is not None:
            self.emulator.stop()
