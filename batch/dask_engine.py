"""Run a batch on Dask distributed: a local cluster for the run, or any existing cluster.

The client plans each interval's partitions (a parquet footer or a few SQL counts), sends one
small task per partition, and publishes each interval once all its parts are staged. Workers
read their partition themselves and load the model once each, by location and hash, into a
worker-level cache: neither the rides nor the model travel through the scheduler.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.job import BatchJob, Progress, Summary
from deploy_modes.batch.locations import one_line
from deploy_modes.batch.partitions import Partition, open_partition, plan_partitions
from deploy_modes.batch.readers import DEFAULT_PARTITION_ROWS, open_reader
from deploy_modes.batch.staging import PartSink, Staging
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import is_s3

__all__ = ["ModelRef", "dask_client", "model_loads", "run_on_dask"]

_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
CONNECT_TIMEOUT = "10s"  # connection refused is retried until then

Say = Callable[[str], None]

# Worker-level cache: one model per (location, sha256) per worker process, loaded by the first
# task that needs it. Keyed by the hash too, so a model replaced at the same location is never
# served from the cache of the old one.
_MODELS: dict[tuple[str, str], ModelService] = {}
_LOADS: dict[tuple[str, str], int] = {}


@dataclass(frozen=True)
class ModelRef:
    """Where a worker finds the model, the hash it must have, and what its load may trust."""

    location: str
    sha256: str
    trust: Trust = field(default_factory=Trust)

    @classmethod
    def of(cls, service: ModelService, trust: Trust | None = None) -> ModelRef:
        """Return the reference of a loaded model service."""
        location = service.model.source
        sha256 = service.model.manifest.get("sha256")
        if not location or not isinstance(sha256, str):
            raise DeployError("the dask engine needs a model loaded from a location (--model)")
        if not is_s3(location):
            location = str(Path(location).resolve())  # workers may not share our directory
        # Resolved here, not from each worker's environment: a worker grants exactly what the
        # command was given (--trust-pickle, ...), no more and no less.
        return cls(location, sha256, trust or Trust.from_settings())


def worker_service(ref: ModelRef) -> ModelService:
    """Return this process's model service for ``ref``, loading it on first use."""
    key = (ref.location, ref.sha256)
    service = _MODELS.get(key)
    if service is None:
        from deploy_modes.core.artifact import load_model

        loaded = load_model(ref.location, ref.trust)
        if loaded.manifest.get("sha256") != ref.sha256:
            raise ModelLoadError(
                f"the model at {ref.location} changed since the run started "
                f"(sha256 {loaded.manifest.get('sha256')}, expected {ref.sha256})"
            )
        service = _MODELS[key] = ModelService(loaded)
        _LOADS[key] = _LOADS.get(key, 0) + 1
    return service


def model_loads() -> dict[str, int]:
    """Return how often this process loaded each model (``location@sha256``): tests, checks."""
    return {f"{loc}@{sha[:12]}": n for (loc, sha), n in _LOADS.items()}


def score_partition(part: Partition, model: ModelRef, sink: PartSink, chunk_rows: int) -> Summary:
    """Score one partition on a worker into its staged part; return its counts."""
    service = worker_service(model)
    job = BatchJob(open_partition(part, chunk_rows), sink.writer(part.index), service)
    return job.run(part.interval)


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, say: Say) -> Iterator[Any]:
    """Yield a client of ``scheduler``, or of a local cluster of ``workers`` started for the run."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise DeployError(
            "--engine dask needs Dask distributed: pip install 'deploy-modes[dask]'"
        ) from exc
    if scheduler and workers:
        raise DeployError("give --workers (a local cluster) or --scheduler, not both")
    if workers is not None and workers < 1:
        raise DeployError(f"--workers must be at least 1, got {workers}")
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise DeployError(
                f"cannot reach the Dask scheduler at {scheduler}: {one_line(exc)}"
            ) from exc
        with client:
            _say_dashboard(client, say)
            yield client
        return
    import dask

    with (
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=64 KiB (hand memory back early); on
        # this job that cost a quarter of the scoring time for no lower peak RSS (measured:
        # docs/batch.md), so our own cluster trims past 256 MiB only.
        dask.config.set({_TRIM: str(256 * 1024 * 1024)}),
        LocalCluster(
            n_workers=workers or 2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # A free loopback port: the default 8787 collides with any other cluster here.
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        _say_dashboard(client, say)
        yield client


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _say_dashboard(client: Any, say: Say) -> None:
    """Print the dashboard link if the scheduler can draw it (it needs bokeh)."""
    # The scheduler registers its HTTP "dashboard" service even without bokeh; the pages
    # are only there with it, so ask the scheduler, not our own process.
    if "dashboard" in client.scheduler_info().get("services", {}) and client.run_on_scheduler(
        _has_bokeh
    ):
        say(f"Dask dashboard: {client.dashboard_link}")


@dataclass
class _Plan:
    interval: Interval
    source: str  # as messages name it (no password)
    staging: Staging
    parts: list[Partition]
    results: dict[int, Summary]
    tick: Progress | None
    started: float


def run_on_dask(
    client: Any,
    plans: Sequence[tuple[Interval, str, str]],
    *,
    service: ModelService,
    trust: Trust | None = None,
    table: str,
    output_table: str,
    chunk_rows: int,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    parts: bool = False,
    progress: Callable[..., Progress | None] | None = None,
    say: Say = print,
) -> list[Summary]:
    """Score ``(interval, source, target)`` triples on the cluster, all intervals at once.

    Each interval is published as soon as its last part is staged; a failing partition fails
    the run with its own error, after the intervals already published. ``parts`` makes each
    file target a folder of the workers' parquet parts instead of one file.
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError

    model = ModelRef.of(service, trust)
    token = uuid.uuid4().hex[:8]
    runs: list[_Plan] = []
    summaries: dict[str, Summary] = {}
    for interval, source, target in plans:
        started = time.perf_counter()
        staging = Staging(target, output_table, interval, token, parts=parts)
        parts = plan_partitions(source, interval, table, partition_rows)
        staging.prepare()
        tick = progress(interval, len(parts), "partitions") if progress is not None else None
        described = open_reader(source, interval, chunk_rows, table).describe()
        plan = _Plan(interval, described, staging, parts, {}, tick, started)
        runs.append(plan)
        if not parts:  # a file without row groups: nothing to score, nothing to publish
            summaries[interval.label] = _publish(plan, service)
    futures: dict[Any, tuple[_Plan, Partition]] = {}
    for plan in runs:
        for part in plan.parts:
            future = client.submit(
                score_partition,
                part,
                model,
                plan.staging.sink,
                chunk_rows,
                key=f"score-{part.interval.label}-{part.index}-{token}",
                pure=False,
            )
            futures[future] = (plan, part)
    try:
        for future in as_completed(list(futures)):
            plan, part = futures[future]
            try:
                result: Summary = future.result()
            except FutureCancelledError:
                continue
            except DeployError as exc:
                # The worker's own one-line error, re-raised here, plus which task it was.
                raise type(exc)(f"{part.label}: {exc}") from None
            except Exception as exc:
                raise DeployError(f"{part.label} of {plan.source} failed: {_why(exc)}") from exc
            plan.results[part.index] = result
            plan.staging.add(part.index, result.rows_written)
            if plan.tick is not None:
                plan.tick(1)
            if len(plan.results) == len(plan.parts):
                scored = time.perf_counter()
                summaries[plan.interval.label] = _publish(plan, service)
                _say_phases(plan, scored, say)
    finally:
        client.cancel(list(futures))
        for plan in runs:
            plan.staging.abort()  # no-op for the published ones
    # Every interval is published and this run's tasks are done: an emptied SQL staging
    # table goes too (kept while another run still has parts in it).
    swept: set[tuple[str, str]] = set()
    for plan in runs:
        where = (plan.staging.target, plan.staging.sink.table)
        if plan.staging.sink.table and where not in swept:
            swept.add(where)
            plan.staging.drop_staging_table()
    return [summaries[plan.interval.label] for plan in runs]


def _say_phases(plan: _Plan, scored: float, say: Say) -> None:
    """Say where an interval's time went: planning and scoring on the cluster, publishing."""
    busy = [r.seconds for r in plan.results.values()]
    appended = ""
    if plan.staging.parts:
        appended = ", parts written as parquet by the workers"
    elif not plan.staging.sink.table:
        # The client's share, mostly while workers score: one process encodes the one file.
        appended = f", parts appended on the client in {plan.staging.append_seconds:.2f}s"
    say(
        f"{plan.interval.label}: {len(busy)} partitions scored in {scored - plan.started:.2f}s "
        f"(a partition took {sum(busy) / len(busy):.3f}s on average, {max(busy):.3f}s at most)"
        f"{appended}, published in {time.perf_counter() - scored:.2f}s"
    )


def _why(exc: Exception) -> str:
    """Return a one-line reason, naming a worker that died rather than Dask's internals."""
    if type(exc).__name__ == "KilledWorker":
        return "the workers running it died every time it was tried"
    return one_line(exc)


def _publish(plan: _Plan, service: ModelService) -> Summary:
    """Add up the parts' counts and publish the interval in one step."""
    summary = Summary(plan.interval.label, plan.source, model_version=service.version)
    for index in range(len(plan.parts)):
        part = plan.results[index]
        summary.rows_read += part.rows_read
        for name, count in part.rows_dropped.items():
            summary.rows_dropped[name] += count
        summary.rows_scored += part.rows_scored
        summary.rows_written += part.rows_written
    summary.output = plan.staging.publish(len(plan.parts))
    summary.seconds = time.perf_counter() - plan.started
    return summary
