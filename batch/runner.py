"""Wire the real parts of a batch run: model, reader and writer by URI, one job per interval.

:func:`run_interval` is the Python API (``deploy compare`` calls it in-process);
:func:`run_intervals` is what ``deploy batch`` runs for a month, a run date or a backfill.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_modes.batch.engines import ENGINES
from deploy_modes.batch.intervals import (
    DEFAULT_OUTPUT,
    Interval,
    check_template,
    month_interval,
    render,
    resolve_intervals,
)
from deploy_modes.batch.job import BatchJob, Progress, Summary
from deploy_modes.batch.locations import check_location, check_source, is_http, is_sql
from deploy_modes.batch.readers import DEFAULT_CHUNK_ROWS, DEFAULT_PARTITION_ROWS, open_reader
from deploy_modes.batch.staging import PARTS_NEED_FILES
from deploy_modes.batch.writers import open_writer
from deploy_modes.core.errors import DeployError, UsageError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import is_s3, join_location

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = [
    "BatchRun",
    "default_input",
    "load_service",
    "report_empty",
    "run_interval",
    "run_intervals",
]

Say = Callable[[str], None]
# Called per interval once its source is open, with its size if known and the unit counted
# ("rows" locally, "partitions" on Dask); returns the tick called as work completes.
ProgressFactory = Callable[[Interval, int | None, str], Progress | None]
_WINDOW_ORDER = ["month", "day", "hour"]


@dataclass(frozen=True)
class BatchRun:
    """What a run reads, writes and how: one value shared by every interval of the run."""

    input: str | None = None
    """Rides: a path/``s3://`` template or a database URL; ``None`` is the data dir's month."""
    output: str = DEFAULT_OUTPUT
    """Predictions: a ``.parquet`` path/``s3://`` template or a database URL."""
    table: str = "trips"
    """Input table when the input is a database URL."""
    output_table: str = "predictions"
    """Output table when the output is a database URL."""
    taxi_type: str = "green"
    """The ``{taxi_type}`` in templates."""
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    """Rows read, scored and written at a time (bounds memory)."""
    partition_rows: int = DEFAULT_PARTITION_ROWS
    """Dask: rows per task (whole row groups, or a pickup sub-window of a SQL window)."""
    engine: str = "local"
    """``local`` (this process) or ``dask`` (a Dask cluster)."""
    workers: int | None = None
    """Dask: start a local cluster of this many worker processes for the run."""
    scheduler: str | None = None
    """Dask: use the existing cluster at this address (``tcp://host:8786``)."""
    output_parts: bool = False
    """Dask: write each interval as a folder of the workers' parquet parts, not one file."""

    def check(self, intervals: Sequence[Interval], core: CoreSettings) -> None:
        """Refuse options no interval of the run could use, before any model is loaded."""
        check_location(self.output)
        if self.engine not in ENGINES:
            raise DeployError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "local" and (self.workers is not None or self.scheduler):
            raise DeployError("--workers and --scheduler need --engine dask")
        if self.output_parts and self.engine != "dask":
            raise UsageError("--output-parts needs --engine dask: the local engine writes one file")
        if self.output_parts and is_sql(self.output):
            raise UsageError(PARTS_NEED_FILES)
        if self.partition_rows < 1:
            raise DeployError(f"partition rows must be at least 1, got {self.partition_rows}")
        if self.chunk_rows < 1:
            raise DeployError(f"chunk rows must be at least 1, got {self.chunk_rows}")
        if not self.taxi_type or not self.taxi_type.replace("_", "").isalnum():
            raise DeployError(
                f"--taxi-type must be a word like green or yellow, got {self.taxi_type!r}"
            )
        kinds = {i.kind for i in intervals}
        source = self.source_template(core)
        check_location(source, readable=True)
        if self.engine == "dask" and is_http(source):
            raise DeployError(
                "--engine dask reads local, s3:// or database inputs: its workers read row "
                "groups by range, which an http(s):// URL does not offer; use --engine local"
            )
        # A given input is checked now (format, a local file's existence): a typo must not
        # cost a demo model's training first. The default month is generated when missing.
        if self.input is not None and "{model_version" not in source:
            for interval in intervals:
                check_source(render(source, interval, self.taxi_type))
        if kinds != {"month"} and not is_sql(source):
            raise DeployError("--window 1h/1d needs a database input (files hold whole months)")
        if not is_sql(self.output) and (len(intervals) > 1 or kinds != {"month"}):
            check_template(self.output, max(kinds, key=_WINDOW_ORDER.index), "--output")

    def source_template(self, core: CoreSettings) -> str:
        """Return the input template, the data dir's month files when none was given."""
        return default_input(core) if self.input is None else self.input

    def source(self, interval: Interval, core: CoreSettings, model_version: str) -> str:
        """Return the interval's input location."""
        location = render(self.source_template(core), interval, self.taxi_type, model_version)
        check_location(location, readable=True)
        return location

    def target(self, interval: Interval, model_version: str) -> str:
        """Return the interval's output location."""
        location = render(self.output, interval, self.taxi_type, model_version)
        check_location(location)
        return location


def default_input(core: CoreSettings) -> str:
    """Return the default input template: the data dir's TLC month files."""
    return join_location(core.data_dir, "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet")


def load_service(
    model: str | ModelService | None, say: Say = print, trust: Trust | None = None
) -> ModelService:
    """Return a model service: given, loaded from ``model``, or the (demo-trained) default.

    ``trust`` defaults to what the environment grants (``DEPLOY_TRUST_PICKLE`` and friends).
    """
    if isinstance(model, ModelService):
        return model
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.demo import ensure_model

    location = model or ensure_model(CoreSettings(), say)
    return ModelService(load_model(location, trust))


def _as_interval(interval: Interval | str) -> Interval:
    if isinstance(interval, Interval):
        return interval
    return resolve_intervals(month=interval)[0]


def run_interval(
    interval: Interval | str,
    *,
    model: str | ModelService | None = None,
    say: Say = print,
    progress: ProgressFactory | None = None,
    core: CoreSettings | None = None,
    trust: Trust | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Score one interval (``"2021-03"`` or an :class:`Interval`) and return its summary dict.

    ``options`` are :class:`BatchRun` fields (``input=``, ``output=``, ``chunk_rows=``, ...).
    """
    run = BatchRun(**options)
    summaries = run_intervals(
        [_as_interval(interval)],
        run,
        model=model,
        say=say,
        progress=progress,
        core=core,
        trust=trust,
    )
    return summaries[0].to_dict()


def run_intervals(
    intervals: Sequence[Interval],
    run: BatchRun,
    *,
    model: str | ModelService | None = None,
    say: Say = print,
    progress: ProgressFactory | None = None,
    core: CoreSettings | None = None,
    trust: Trust | None = None,
) -> list[Summary]:
    """Score every interval in order (a backfill stops at the first failing month)."""
    core = core or CoreSettings()
    run.check(intervals, core)
    service = load_service(model, say, trust)
    if run.engine == "dask":
        return _run_dask(intervals, run, service, say, progress, core, trust)
    return [_run_one(interval, run, service, say, progress, core) for interval in intervals]


def _run_dask(
    intervals: Sequence[Interval],
    run: BatchRun,
    service: ModelService,
    say: Say,
    progress: ProgressFactory | None,
    core: CoreSettings,
    trust: Trust | None,
) -> list[Summary]:
    from deploy_modes.batch.dask_engine import dask_client, run_on_dask

    plans = []
    for interval in intervals:
        source = run.source(interval, core, service.version)
        if run.input is None and interval.kind == "month" and not is_s3(source):
            _ensure_default_month(source, interval, run.taxi_type, core, say)
        plans.append((interval, source, run.target(interval, service.version)))
    with dask_client(run.workers, run.scheduler, say) as client:
        summaries = run_on_dask(
            client,
            plans,
            service=service,
            trust=trust,
            table=run.table,
            output_table=run.output_table,
            chunk_rows=run.chunk_rows,
            partition_rows=run.partition_rows,
            parts=run.output_parts,
            progress=progress,
            say=say,
        )
    for summary in summaries:
        report_empty(summary, say)
    return summaries


def _run_one(
    interval: Interval,
    run: BatchRun,
    service: ModelService,
    say: Say,
    progress: ProgressFactory | None,
    core: CoreSettings,
) -> Summary:
    source = run.source(interval, core, service.version)
    target = run.target(interval, service.version)
    if run.input is None and interval.kind == "month" and not is_s3(source):
        _ensure_default_month(source, interval, run.taxi_type, core, say)
    reader = open_reader(source, interval, run.chunk_rows, run.table)
    writer = open_writer(target, run.output_table)
    tick = None if progress is None else lambda total: progress(interval, total, "rows")
    summary = BatchJob(reader, writer, service, tick).run(interval)
    report_empty(summary, say)
    return summary


def report_empty(summary: Summary, say: Say) -> None:
    """Say why an interval wrote nothing, if it did not."""
    if summary.rows_read == 0:
        say(f"{summary.interval}: the interval has no rides in {summary.source}: nothing written")
    elif summary.output is None:
        say(f"{summary.interval}: every ride was dropped: nothing written")


def _ensure_default_month(
    source: str, interval: Interval, taxi_type: str, core: CoreSettings, say: Say
) -> None:
    """Generate the default input month when missing, as the quick start promises."""
    if is_http(source) or Path(source).exists():
        return  # a URL data dir is only read: the reader says what is missing there
    if taxi_type != "green":
        return  # the generator makes green trips only; let the reader say the file is missing
    from deploy_modes.core.data import generate_month, write_month

    say(f"no data for {interval.label} at {source}: generating {core.demo_rows:,} demo rides")
    start = month_interval(interval.start.year, interval.start.month).start
    frame = generate_month(start.year, start.month, rows=core.demo_rows, seed=core.seed)
    write_month(frame, source)
