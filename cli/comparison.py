"""Run batch, web and stream as a user runs them, on the same rides, and measure each.

Each runner starts the mode's real processes (the ``deploy batch`` job, gunicorn, the
``deploy stream consume`` consumer against a moto server), sends it every ride, collects every
prediction keyed by ``ride_id``, and stops what it started in a ``finally`` (Ctrl-C too).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http

__all__ = [
    "MAX_RIDES",
    "MODES",
    "RIDE_MONTH",
    "TOLERANCE",
    "Agreement",
    "ModeResult",
    "OutputReader",
    "PeakMemory",
    "RideSet",
    "WebClients",
    "agreement",
    "batch_result",
    "batch_summary",
    "collect_stream",
    "no_progress",
    "prepare_rides",
    "run_batch",
    "run_stream",
    "run_web",
    "send_and_collect",
    "tree_rss",
    "wait_for_probe",
]

MODES = ("batch", "web", "stream")
TOLERANCE = 1e-9  # predictions of one model must agree to this (they come from one code path)
MAX_RIDES = 200_000  # the web mode sends one request per ride: more would take many minutes
RIDE_MONTH = "2021-03"
# The batch job names rides f"{year:04d}/{month:02d}_{row}"; the other modes get the same ids.
ID_PREFIX = "2021/03"
REQUIRED = ["lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID", "DOLocationID"]
READY_TIMEOUT = 90.0
REQUEST_TIMEOUT = 30.0
STALL_TIMEOUT = 60.0  # the stream runner gives up when no prediction arrives for this long
MEMORY_EVERY = 0.02  # seconds between RSS samples (the batch job lives ~2 s)
# Rides just inside the course's 1..60 minute filter, so float rounding cannot drop one.
_DURATION_MARGIN = 1e-6
_PROBE_ID = "compare-probe"

Say = Callable[[str], None]
Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], contextlib.AbstractContextManager[Advance]]


@dataclass
class RideSet:
    """The N rides every mode gets: ids, columns, and the parquet month the batch job reads."""

    ride_ids: list[str]
    pu: np.ndarray
    do: np.ndarray
    distance: np.ndarray
    path: Path
    source: str
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.ride_ids)

    def payload(self, i: int) -> dict[str, Any]:
        """Return ride ``i`` as the course's web payload, with its ride_id."""
        return {
            "PULocationID": int(self.pu[i]),
            "DOLocationID": int(self.do[i]),
            "trip_distance": float(self.distance[i]),
            "ride_id": self.ride_ids[i],
        }

    def event(self, i: int) -> dict[str, Any]:
        """Return ride ``i`` as the course's Kinesis input event."""
        ride = self.payload(i)
        return {"ride": ride, "ride_id": ride.pop("ride_id")}


@dataclass
class ModeResult:
    """What one mode did with the rides: predictions by ride_id and its timings."""

    mode: str
    rides: int
    startup_s: float
    wall_s: float
    latencies_s: np.ndarray
    peak_rss_bytes: int
    predictions: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Return rides per second over the wall time."""
        return self.rides / self.wall_s if self.wall_s > 0 else 0.0

    def percentiles(self) -> dict[str, float]:
        """Return p50/p95/p99 latency in seconds (NaN when nothing was measured)."""
        if self.latencies_s.size == 0:
            return {"p50": math.nan, "p95": math.nan, "p99": math.nan}
        p50, p95, p99 = np.percentile(self.latencies_s, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


@dataclass
class Agreement:
    """Whether every ride got the same prediction from every mode."""

    compared: int
    max_diff: float
    mismatches: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """Return whether all modes agree on every ride."""
        return not self.mismatches


def tree_rss(pid: int) -> tuple[int, int]:
    """Return the summed RSS of a process and all its descendants, and how many they are."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:  # the root exited
        return 0, 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total, len(procs)


class PeakMemory:
    """Sample the RSS of a process and all its children in a thread; keep the peak sum.

    Subclasses sample other process trees by overriding :meth:`root_pids`.
    """

    every = MEMORY_EVERY

    def __init__(self, pid: int = 0, name: str = "") -> None:
        self.pid = pid
        self.peak = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{name or pid}")
        self._thread.start()

    def root_pids(self) -> list[int]:
        """Return the roots of the process trees to sum."""
        return [self.pid]

    def sample(self) -> int:
        """Return the RSS sum now (and update the peak)."""
        total = count = 0
        for pid in self.root_pids():
            rss, procs = tree_rss(pid)
            total += rss
            count += procs
        self.peak = max(self.peak, total)
        self.processes = max(self.processes, count)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def stop(self) -> int:
        """Stop sampling and return the peak in bytes."""
        self._stop.set()
        self._thread.join(10)
        return self.peak


# --- the rides ----------------------------------------------------------------------------


def _selectable(frame: Any) -> np.ndarray:
    """Return the mask of rows every mode scores: valid ride, 1..60 minute duration."""
    from deploy_modes.core.features import MAX_DURATION_MIN, MIN_DURATION_MIN
    from deploy_modes.core.validation import invalid_reasons

    pu = frame["PULocationID"].to_numpy(dtype="float64", na_value=np.nan)
    do = frame["DOLocationID"].to_numpy(dtype="float64", na_value=np.nan)
    distance = frame["trip_distance"].to_numpy(dtype="float64", na_value=np.nan)
    invalid = np.zeros(len(frame), dtype=bool)
    for mask in invalid_reasons(pu, do, distance).values():
        invalid |= mask
    pickup = frame["lpep_pickup_datetime"].to_numpy(dtype="datetime64[us]")
    dropoff = frame["lpep_dropoff_datetime"].to_numpy(dtype="datetime64[us]")
    minutes = (dropoff - pickup).astype("timedelta64[us]").astype("float64") / 60e6
    with np.errstate(invalid="ignore"):
        in_range = (minutes >= MIN_DURATION_MIN + _DURATION_MARGIN) & (
            minutes <= MAX_DURATION_MIN - _DURATION_MARGIN
        )
    return ~invalid & in_range & ~np.isnat(pickup) & ~np.isnat(dropoff)


def prepare_rides(count: int, seed: int, workdir: Path, source: str | None = None) -> RideSet:
    """Return ``count`` rides every mode scores (generated, or the first valid ones of a file)."""
    from deploy_modes.core.data import generate_month, read_trips

    if not 1 <= count <= MAX_RIDES:
        raise DeployError(f"--rides must be 1 to {MAX_RIDES:,}, got {count}")
    if source is not None:
        if not str(source).strip():
            raise DeployError("--input is empty: give a TLC parquet month")
        frame = read_trips(source)
        keep = _selectable(frame)
        label = str(source)
    else:
        # A generated month has ~3% rides outside the filter: ask for more, then cut.
        rows = count + count // 10 + 100
        while True:
            frame = generate_month(2021, 3, rows=rows, seed=seed)
            keep = _selectable(frame)
            if keep.sum() >= count:
                break
            rows *= 2
        label = f"generated ({RIDE_MONTH}, seed {seed})"
    positions = np.flatnonzero(keep)
    dropped_by_filter = int(len(frame) - len(positions)) if source is not None else 0
    if len(positions) == 0:
        raise DeployError(
            f"{label} has no ride every mode can score (valid zones and distance, 1..60 minutes)"
        )
    positions = positions[:count]
    chosen = frame.iloc[positions].reset_index(drop=True)
    path = workdir / f"green_tripdata_{RIDE_MONTH}.parquet"
    _write_rides(chosen, path)
    n = len(chosen)
    return RideSet(
        ride_ids=[f"{ID_PREFIX}_{i}" for i in range(n)],
        pu=chosen["PULocationID"].to_numpy(dtype="float64").astype("int64"),
        do=chosen["DOLocationID"].to_numpy(dtype="float64").astype("int64"),
        distance=chosen["trip_distance"].to_numpy(dtype="float64"),
        path=path,
        source=label,
        dropped=dropped_by_filter,
    )


def _write_rides(frame: Any, path: Path) -> None:
    """Write the rides with just the columns the batch job reads (ids are row positions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array(
                frame["lpep_pickup_datetime"].to_numpy(dtype="datetime64[us]")
            ),
            "lpep_dropoff_datetime": pa.array(
                frame["lpep_dropoff_datetime"].to_numpy(dtype="datetime64[us]")
            ),
            "PULocationID": pa.array(frame["PULocationID"].to_numpy(dtype="float64")),
            "DOLocationID": pa.array(frame["DOLocationID"].to_numpy(dtype="float64")),
            "trip_distance": pa.array(frame["trip_distance"].to_numpy(dtype="float64")),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# --- shared helpers -----------------------------------------------------------------------


def _deploy_args() -> list[str]:
    """Return the argv prefix of the ``deploy`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "deploy"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from deploy_modes.cli.main import main; main()"]


def _stopped(process: ManagedProcess | None, memory: PeakMemory | None) -> int:
    """Stop the sampler and the process (SIGTERM, then SIGKILL); return the RSS peak."""
    peak = memory.stop() if memory is not None else 0
    if process is not None and process.poll() is None:
        process.stop(timeout=20)
    if process is not None:
        process.kill()  # the whole process group: no orphaned worker survives its master
    return peak


# --- batch --------------------------------------------------------------------------------


def run_batch(rides: RideSet, model: str, workdir: Path, log_dir: Path, say: Say) -> ModeResult:
    """Run ``deploy batch`` on the rides' month; latency of every ride is the job's wall time."""
    import pyarrow.parquet as pq

    output = workdir / "batch" / "predictions.parquet"
    log = log_dir / "batch.log"
    log.unlink(missing_ok=True)
    args = [
        *_deploy_args(),
        "batch",
        "--runtime",
        "local",
        "--month",
        RIDE_MONTH,
        "--input",
        str(rides.path),
        "--output",
        str(output),
        "--model",
        model,
        "--json",
    ]
    say(f"batch: deploy batch --month {RIDE_MONTH} on {len(rides):,} rides")
    process: ManagedProcess | None = None
    memory: PeakMemory | None = None
    started = time.perf_counter()
    try:
        process = ManagedProcess("deploy batch", args, env={"COLUMNS": "200"}, log_path=log)
        memory = PeakMemory(process.pid)
        code = process.popen.wait()
        total = time.perf_counter() - started
        memory.sample()
    finally:
        peak = _stopped(process, memory)
    if code != 0:
        raise DeployError(f"the batch job exited with code {code}" + process.tail(10))
    summary = batch_summary(log)
    table = pq.read_table(output, columns=["ride_id", "predicted_duration"])
    return batch_result(len(rides), table, summary, total, peak, process_wall_s=total)


def batch_result(
    ride_count: int,
    table: Any,
    summary: dict[str, Any],
    total_s: float,
    peak: int,
    **details: Any,
) -> ModeResult:
    """Turn the batch job's output table and ``--json`` summary into the mode's result."""
    job = float(summary.get("seconds") or total_s)
    predictions = dict(
        zip(
            table.column("ride_id").to_pylist(),
            table.column("predicted_duration").to_pylist(),
            strict=True,
        )
    )
    errors = []
    dropped = sum((summary.get("rows_dropped") or {}).values())
    if dropped:
        errors.append(f"the batch job dropped {dropped} rides: {summary['rows_dropped']}")
    return ModeResult(
        mode="batch",
        rides=ride_count,
        # Command to "ready" = interpreter, imports and model load before the job starts.
        startup_s=max(total_s - job, 1e-6),
        wall_s=job,
        latencies_s=np.full(len(predictions), job),
        peak_rss_bytes=peak,
        predictions=predictions,
        errors=errors,
        details={**details, "rows_read": summary.get("rows_read")},
    )


def batch_summary(log: Path | str) -> dict[str, Any]:
    """Return the job's ``--json`` summary line from its log file (or its output text)."""
    text = log.read_text(errors="replace") if isinstance(log, Path) else log
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return dict(json.loads(line))
    raise DeployError(f"the batch job printed no summary (log: {log})")


# --- web ----------------------------------------------------------------------------------


def run_web(
    rides: RideSet,
    model: str,
    log_dir: Path,
    say: Say,
    progress: ProgressFactory,
    concurrency: int = 8,
    workers: int | None = None,
) -> ModeResult:
    """Start gunicorn on a free port and POST every ride with ``concurrency`` clients."""
    from deploy_modes.cli.web import GUNICORN_ARGS

    port = free_port()
    metrics_dir = tempfile.mkdtemp(prefix="deploy-compare-metrics-")
    env = {
        "DEPLOY_MODEL_LOCATION": model,
        "DEPLOY_WEB_HOST": "127.0.0.1",
        "DEPLOY_WEB_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "PYTHONUNBUFFERED": "1",
    }
    if workers is not None:
        env["DEPLOY_WEB_WORKERS"] = str(workers)
    log = log_dir / "web.log"
    log.unlink(missing_ok=True)
    say(f"web: starting gunicorn on 127.0.0.1:{port}")
    process: ManagedProcess | None = None
    memory: PeakMemory | None = None
    try:
        started = time.perf_counter()
        process = ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log)
        memory = PeakMemory(process.pid)
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=READY_TIMEOUT, process=process)
        startup = time.perf_counter() - started
        clients = WebClients(port, rides, concurrency)
        with progress(f"web: POST /predict x{len(rides):,}", len(rides)) as advance:
            wall = clients.run(advance)
        memory.sample()
        worker_count = memory.processes - 1  # the master's children
    finally:
        peak = _stopped(process, memory)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return clients.result(
        startup, wall, peak, concurrency=concurrency, workers=worker_count, port=port
    )


class WebClients:
    """``concurrency`` threads, each POSTing its share of the rides one request at a time."""

    def __init__(self, port: int, rides: RideSet, concurrency: int) -> None:
        self.port = port
        self.rides = rides
        self.concurrency = max(1, min(concurrency, len(rides)))
        self.predictions: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def result(self, startup: float, wall: float, peak: int, **details: Any) -> ModeResult:
        """Return the web mode's result from what the clients saw."""
        return ModeResult(
            mode="web",
            rides=len(self.rides),
            startup_s=startup,
            wall_s=wall,
            latencies_s=np.asarray(self.latencies, dtype="float64"),
            peak_rss_bytes=peak,
            predictions=self.predictions,
            errors=self.errors[:20],
            details=details,
        )

    def run(self, advance: Advance) -> float:
        """Send every ride; return the wall time from the first request to the last answer."""
        threads = [
            threading.Thread(target=self._client, args=(k,), daemon=True)
            for k in range(self.concurrency)
        ]
        started = time.perf_counter()
        reported = 0
        try:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.05)
                with self._lock:
                    done = self.done
                advance(done - reported)
                reported = done
        finally:
            self._stop.set()  # Ctrl-C: the clients stop after their request in flight
            for thread in threads:
                if thread.ident is not None:  # Ctrl-C may land before every thread started
                    thread.join(REQUEST_TIMEOUT + 5)
        wall = time.perf_counter() - started
        advance(self.done - reported)
        return wall

    def _client(self, k: int) -> None:
        for i in range(k, len(self.rides), self.concurrency):
            if self._stop.is_set():
                return
            body = json.dumps(self.rides.payload(i)).encode()
            sent = time.perf_counter()
            try:
                status, answer = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._record(i, None, f"{self.rides.ride_ids[i]}: {type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - sent
            try:
                duration = float(json.loads(answer)["duration"]) if status == 200 else None
            except (ValueError, KeyError, TypeError):
                duration = None
            if duration is None:
                text = answer[:200].decode(errors="replace")
                self._record(i, None, f"{self.rides.ride_ids[i]}: HTTP {status}: {text}")
            else:
                self._record(i, duration, None, took)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        # One connection per request: gunicorn's sync workers close it after each answer.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _record(
        self, i: int, duration: float | None, error: str | None, took: float | None = None
    ) -> None:
        with self._lock:
            self.done += 1
            if duration is not None:
                self.predictions[self.rides.ride_ids[i]] = duration
            if took is not None:
                self.latencies.append(took)
            if error is not None:
                self.errors.append(error)


# --- stream -------------------------------------------------------------------------------


def run_stream(
    rides: RideSet,
    model: str,
    workdir: Path,
    log_dir: Path,
    say: Say,
    progress: ProgressFactory,
    shards: int = 2,
) -> ModeResult:
    """Start moto and ``deploy stream consume``, put every ride, read every prediction back."""
    from deploy_modes.launch.emulator import ensure_emulator

    say("stream: starting a moto server (the local Kinesis) on a free port")
    emulator = None
    emulator_memory: PeakMemory | None = None
    try:
        t0 = time.perf_counter()
        emulator = ensure_emulator(port=free_port(), log_dir=log_dir)
        emulator_startup = time.perf_counter() - t0
        if emulator.process is not None:
            emulator_memory = PeakMemory(emulator.process.pid)
        result = _stream_with(emulator, rides, model, workdir, log_dir, say, progress, shards)
    finally:
        emulator_peak = emulator_memory.stop() if emulator_memory is not None else 0
        if emulator is not None:
            emulator.stop()
    result.details.update(
        emulator_startup_s=emulator_startup, emulator_peak_rss_bytes=emulator_peak
    )
    return result


def _stream_with(
    emulator: Any,
    rides: RideSet,
    model: str,
    workdir: Path,
    log_dir: Path,
    say: Say,
    progress: ProgressFactory,
    shards: int,
) -> ModeResult:
    import os

    from deploy_modes.core.storage import aws_client
    from deploy_modes.stream.kinesis import ensure_streams

    os.environ.update({k: v for k, v in emulator.env().items() if k != "AWS_ENDPOINT_URL"})
    suffix = uuid.uuid4().hex[:8]
    names = {
        "DEPLOY_STREAM_INPUT_STREAM": f"compare_rides_{suffix}",
        "DEPLOY_STREAM_OUTPUT_STREAM": f"compare_predictions_{suffix}",
        "DEPLOY_STREAM_DLQ_STREAM": f"compare_dlq_{suffix}",
    }
    kinesis = aws_client("kinesis", emulator.url)
    ensure_streams(kinesis, list(names.values()), shards, say=lambda _m: None)
    env = {
        **emulator.env(),
        **names,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(workdir / f"checkpoints-{suffix}.sqlite"),
        "PYTHONUNBUFFERED": "1",
    }
    args = [
        *_deploy_args(),
        "stream",
        "consume",
        "--consumer-name",
        f"compare-{suffix}",
        "--endpoint-url",
        emulator.url,
        "--model",
        model,
    ]
    log = log_dir / "stream.log"
    log.unlink(missing_ok=True)
    say(f"stream: starting the consumer ({shards} shards)")
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
        wait_for_probe(kinesis, names["DEPLOY_STREAM_INPUT_STREAM"], rides, output, dead)
        startup = time.perf_counter() - started
        wall = send_and_collect(
            kinesis, names["DEPLOY_STREAM_INPUT_STREAM"], rides, output, dead, progress
        )
        memory.sample()
    finally:
        peak = _stopped(process, memory)
    predictions, latencies, dead_letters = collect_stream(
        kinesis,
        names["DEPLOY_STREAM_INPUT_STREAM"],
        names["DEPLOY_STREAM_OUTPUT_STREAM"],
        names["DEPLOY_STREAM_DLQ_STREAM"],
    )
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


# --- agreement ----------------------------------------------------------------------------


def agreement(rides: RideSet, results: list[ModeResult], limit: int = 50) -> Agreement:
    """Compare every ride's predictions across modes; a missing one is a mismatch too."""
    mismatches: list[dict[str, Any]] = []
    max_diff = 0.0
    total = 0
    for ride_id in rides.ride_ids:
        values = {r.mode: r.predictions.get(ride_id) for r in results}
        present = [v for v in values.values() if v is not None]
        missing = [mode for mode, v in values.items() if v is None]
        diff = max(present) - min(present) if present else math.nan
        if present and math.isfinite(diff):
            max_diff = max(max_diff, diff)
        if missing or not math.isfinite(diff) or diff > TOLERANCE:
            total += 1
            if len(mismatches) < limit:
                reason = f"missing in {', '.join(missing)}" if missing else f"differ by {diff:.3g}"
                mismatches.append({"ride_id": ride_id, **values, "reason": reason})
    if total > len(mismatches):
        mismatches.append({"ride_id": None, "reason": f"... and {total - limit} more"})
    return Agreement(compared=len(rides), max_diff=max_diff, mismatches=mismatches)


@contextlib.contextmanager
def no_progress(_description: str, _total: int) -> Iterator[Advance]:
    """Yield a progress callback that shows nothing (for the Python API and tests)."""
    yield lambda _n: None
