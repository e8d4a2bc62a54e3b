"""The batch lane: rides wait; every interval one ``deploy batch`` job scores what arrived."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.lane import Answer, Tally
from deploy_modes.classroom.processes import deploy, memory_of
from deploy_modes.classroom.rides import Ride, RidePool
from deploy_modes.classroom.state import LaneState
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.rides import ID_PREFIX, RIDE_MONTH
from deploy_modes.launch.processes import ManagedProcess

__all__ = ["BatchLane", "BatchRun"]


@dataclass(frozen=True)
class BatchRun:
    """One job: its rides, how it ended, its predictions (ride id -> (duration, version))."""

    number: int
    rides: int
    code: int
    seconds: float
    predictions: dict[int, tuple[float, str]]
    output: Path
    log: Path
    killed: bool = False


class BatchLane:
    """Collect rides; every ``interval`` seconds write them as a TLC file and run the job on it."""

    DASK = "a local Dask cluster of 2 workers"  # what the scale scenario's runs use

    def __init__(
        self,
        model: str,
        pool: RidePool,
        interval: float,
        log_dir: Path,
        workdir: Path,
        clock: Callable[[], float],
        checker: Checker,
    ) -> None:
        self.model = model
        self.pool = pool
        self.interval = interval
        self.log_dir = log_dir
        self.workdir = workdir
        self.clock = clock
        self.checker = checker
        self.tally = Tally("batch", "Batch", "rides waiting for the next run")
        self.engine: list[str] = ["--engine", "local"]
        self.engine_text = "one process"
        self._lock = threading.Lock()
        self._pending: list[Ride] = []
        self.running: ManagedProcess | None = None
        self.running_rides = 0
        self.runs: list[BatchRun] = []
        self.next_run = clock() + interval
        self.stop = threading.Event()
        self.hold = threading.Lock()  # a scenario holds it to run jobs of its own in between
        self._thread = threading.Thread(target=self._loop, name="batch-schedule", daemon=True)
        self._count = 0
        self.last_peak: tuple[int, int] = (0, 0)  # the last run's peak RSS and process count

    def start(self) -> None:
        """Start the schedule."""
        self._thread.start()

    def submit(self, rides: list[Ride]) -> None:
        """Keep rides for the next run."""
        self.tally.ride_in(len(rides))
        with self._lock:
            self._pending.extend(rides)

    def take(self) -> list[Ride]:
        """Return and forget the rides waiting now."""
        with self._lock:
            rides, self._pending = self._pending, []
        return rides

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            if self.clock() < self.next_run:
                continue
            with self.hold:
                rides = self.take()
                if rides:
                    run = self.run(rides)
                    self.record(run, rides)
                self.next_run = self.clock() + self.interval

    def run(self, rides: list[Ride], kill_after: float | None = None, tag: str = "") -> BatchRun:
        """Run one job on ``rides`` (SIGKILL it after ``kill_after`` s); read what it wrote."""
        self._count += 1
        number = self._count
        folder = self.workdir / "batch" / f"run-{number:04d}{tag}"
        source = folder / f"green_tripdata_{RIDE_MONTH}.parquet"
        output = folder / "predictions.parquet"
        self.pool.write([ride.row for ride in rides], source)
        log = self.log_dir / f"batch-{number:04d}{tag}.log"
        started = time.monotonic()
        process = self.launch(number, source, output, log)
        self.running, self.running_rides = process, len(rides)
        memory = self.peak(process)
        killed = False
        try:
            if kill_after is not None:
                try:
                    process.popen.wait(timeout=kill_after)
                except Exception:  # still running: the point of the exercise
                    self.kill(process)
                    killed = True
            code = process.popen.wait()
        finally:
            self.last_peak = (memory.stop(), memory.processes)
            self.running, self.running_rides = None, 0
            process.kill()
        seconds = time.monotonic() - started
        predictions = self.read(output, rides) if code == 0 else {}
        return BatchRun(number, len(rides), code, seconds, predictions, output, log, killed)

    def launch(self, number: int, source: Path, output: Path, log: Path) -> ManagedProcess:
        """Start ``deploy batch`` on ``source``, writing ``output``."""
        args = ["batch", "--runtime", "local", "--month", RIDE_MONTH, "--input", str(source)]
        args += ["--output", str(output), "--model", self.model, "--json", *self.engine]
        return deploy(f"batch run {number}", args, {"COLUMNS": "200"}, log)

    def peak(self, process: ManagedProcess) -> PeakMemory:
        """Start sampling the run's peak memory."""
        return PeakMemory(process.pid, "batch")

    def kill(self, process: ManagedProcess) -> None:
        """SIGKILL the run: the job and every process it started."""
        os.killpg(process.pid, signal.SIGKILL)

    def memory(self, running: ManagedProcess) -> tuple[int, int]:
        """Return the running job's summed RSS and process count."""
        return memory_of([running])

    @staticmethod
    def read(output: Path, rides: list[Ride]) -> dict[int, tuple[float, str]]:
        """Return a job's predictions by the room's ride id (its ride_id is the row position)."""
        import pyarrow.parquet as pq

        table = pq.read_table(output, columns=["ride_id", "predicted_duration", "model_version"])
        predictions: dict[int, tuple[float, str]] = {}
        for ride_id, duration, version in zip(
            table.column("ride_id").to_pylist(),
            table.column("predicted_duration").to_pylist(),
            table.column("model_version").to_pylist(),
            strict=True,
        ):
            position = int(str(ride_id).removeprefix(f"{ID_PREFIX}_"))
            predictions[rides[position].ride_id] = (float(duration), str(version))
        return predictions

    def record(self, run: BatchRun, rides: list[Ride]) -> None:
        """Count a finished run's predictions; a failed run puts its rides back for the next."""
        self.runs.append(run)
        if run.code != 0:
            self.tally.error(f"run {run.number} exited with code {run.code}; log {run.log}")
            with self._lock:
                self._pending[:0] = rides
            return
        now = self.clock()
        for ride in rides:
            found = run.predictions.get(ride.ride_id)
            if found is None:
                self.tally.error(f"run {run.number} gave no prediction for ride {ride.ride_id}")
                continue
            got = Answer(ride.ride_id, found[0], found[1], now)
            if self.tally.answer(got, ride.sent):
                self.checker.submit(self.tally, ride, got)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def state(self, now: float) -> LaneState:
        """Return the lane for the page."""
        waiting = self.waiting
        running = self.running
        last = self.runs[-1] if self.runs else None
        if running is not None:
            status = ("busy", f"a run scores {self.running_rides} rides now")
        elif last is not None and last.code != 0:
            status = (
                "down",
                f"run {last.number} failed (code {last.code}): its rides wait for the next",
            )
        else:
            status = (
                "ok",
                f"the rides wait: the next run is in {max(0.0, self.next_run - now):.0f} s",
            )
        done = f", last run {last.seconds:.1f} s for {last.rides} rides" if last else ""
        detail = f"every {self.interval:.0f} s, {self.engine_text}, {len(self.runs)} runs{done}"
        # Between runs no process exists: the memory shown is the last run's peak.
        memory = self.memory(running) if running else self.last_peak
        return self.tally.state(now, waiting + self.running_rides, status, memory, detail)

    def close(self) -> None:
        """Stop the schedule (a run in progress is stopped)."""
        self.stop.set()
        running = self.running
        if running is not None:
            running.kill()
        if self._thread.ident is not None:  # a room whose start failed never started it
            self._thread.join(timeout=30)
