"""Wire the real parts of a batch run: model, reader and writer by URI, one job per interval.

:func:`run_interval` is the Python API (``deploy compare`` calls it in-process);
:func:`run_intervals` is what ``deploy batch`` runs for a month, a run date or a backfill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_modes.batch.intervals import (
    Interval,
    check_template,
    month_interval,
    render,
    resolve_intervals,
)
from deploy_modes.batch.job import BatchJob, Progress, Summary
from deploy_modes.batch.locations import check_location, is_sql
from deploy_modes.batch.readers import DEFAULT_CHUNK_ROWS, open_reader
from deploy_modes.batch.writers import open_writer
from deploy_modes.core.errors import DeployError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import is_s3

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = ["default_input", "load_service", "run_interval", "run_intervals"]

Say = Callable[[str], None]
ProgressFactory = Callable[[Interval, int | None], Progress | None]


def default_input(core: CoreSettings) -> str:
    """Return the default input template: the data dir's TLC month files."""
    return str(Path(core.data_dir) / "{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet")


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
    input: str | None = None,
    output: str | None = None,
    table: str = "trips",
    output_table: str = "predictions",
    taxi_type: str = "green",
    model: str | ModelService | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    say: Say = print,
    progress: ProgressFactory | None = None,
    core: CoreSettings | None = None,
) -> dict[str, Any]:
    """Score one interval (``"2021-03"`` or an :class:`Interval`) and return its summary dict."""
    service = load_service(model, say)
    summary = _run_one(
        _as_interval(interval),
        service,
        input=input,
        output=output,
        table=table,
        output_table=output_table,
        taxi_type=taxi_type,
        chunk_rows=chunk_rows,
        say=say,
        progress=progress,
        core=core or CoreSettings(),
    )
    return summary.to_dict()


def run_intervals(
    intervals: Sequence[Interval],
    *,
    input: str | None = None,
    output: str | None = None,
    table: str = "trips",
    output_table: str = "predictions",
    taxi_type: str = "green",
    model: str | ModelService | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    say: Say = print,
    progress: ProgressFactory | None = None,
    core: CoreSettings | None = None,
    trust: Trust | None = None,
) -> list[Summary]:
    """Score every interval in order (a backfill stops at the first failing month)."""
    from deploy_modes.batch.intervals import DEFAULT_OUTPUT

    core = core or CoreSettings()
    out = output or DEFAULT_OUTPUT
    check_location(out)
    if chunk_rows < 1:
        raise DeployError(f"chunk rows must be at least 1, got {chunk_rows}")
    if not taxi_type or not taxi_type.replace("_", "").isalnum():
        raise DeployError(f"--taxi-type must be a word like green or yellow, got {taxi_type!r}")
    kinds = {i.kind for i in intervals}
    source = default_input(core) if input is None else input
    check_location(source)
    if kinds != {"month"} and not is_sql(source):
        raise DeployError("--window 1h/1d needs a database input (files hold whole months)")
    if not is_sql(out) and (len(intervals) > 1 or kinds != {"month"}):
        check_template(out, max(kinds, key=["month", "day", "hour"].index), "--output")
    service = load_service(model, say, trust)
    return [
        _run_one(
            interval,
            service,
            input=input,
            output=out,
            table=table,
            output_table=output_table,
            taxi_type=taxi_type,
            chunk_rows=chunk_rows,
            say=say,
            progress=progress,
            core=core,
        )
        for interval in intervals
    ]


def _run_one(
    interval: Interval,
    service: ModelService,
    *,
    input: str | None,
    output: str | None,
    table: str,
    output_table: str,
    taxi_type: str,
    chunk_rows: int,
    say: Say,
    progress: ProgressFactory | None,
    core: CoreSettings,
) -> Summary:
    from deploy_modes.batch.intervals import DEFAULT_OUTPUT

    source = render(input or default_input(core), interval, taxi_type, service.version)
    target = render(output or DEFAULT_OUTPUT, interval, taxi_type, service.version)
    check_location(source)
    check_location(target)
    if input is None and interval.kind == "month" and not is_s3(source):
        _ensure_default_month(source, interval, taxi_type, core, say)
    reader = open_reader(source, interval, chunk_rows, table)
    writer = open_writer(target, output_table)
    started = time.perf_counter()  # includes opening (an S3 download), unlike the job's own
    try:
        total = reader.open()
        tick = progress(interval, total) if progress is not None else None
        summary = BatchJob(reader, writer, service, tick).run(interval)
        summary.seconds = time.perf_counter() - started
    finally:
        reader.close()
        close = getattr(writer, "close", None)
        if close is not None:
            close()
    if summary.rows_read == 0:
        say(f"{interval.label}: the interval has no rides in {reader.describe()}: nothing written")
    elif summary.output is None:
        say(f"{interval.label}: every ride was dropped: nothing written")
    return summary


def _ensure_default_month(
    source: str, interval: Interval, taxi_type: str, core: CoreSettings, say: Say
) -> None:
    """Generate the default input month when missing, as the quick start promises."""
    if Path(source).exists():
        return
    if taxi_type != "green":
        return  # the generator makes green trips only; let the reader say the file is missing
    from deploy_modes.core.data import generate_month, write_month

    say(f"no data for {interval.label} at {source}: generating {core.demo_rows:,} demo rides")
    start = month_interval(interval.start.year, interval.start.month).start
    frame = generate_month(start.year, start.month, rows=core.demo_rows, seed=core.seed)
    write_month(frame, source)
