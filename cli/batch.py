"""``deploy batch``: score a month, the interval before a run date, or a backfill, then exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from deploy_modes.cli.console import console, err_console, isatty, say, typer_app
from deploy_modes.cli.runtime import BakeOption, ModelOption

__all__ = ["app", "run"]

app = typer_app(
    "Score an interval's rides (a month, the month or window before --run-date, or a "
    "--from/--to backfill) and write predictions out, then exit: cron-friendly.\n\n"
    "Example: deploy batch --runtime local --month 2021-03"
)


@contextmanager
def _progress_bars() -> Iterator[Any]:
    """Yield a progress factory: rich bars with rows/s on a terminal, nothing otherwise."""
    if not isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:

        def factory(interval: Any, total: int | None, unit: str = "rows") -> Any:
            task = bars.add_task(f"scoring {interval.label} ({unit})", total=total, rate="")

            def tick(done: int) -> None:
                bars.advance(task, done)
                speed = bars.tasks[task].speed
                bars.update(task, rate=f"{speed:,.1f} {unit}/s" if speed else "")

            return tick

        yield factory


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    runtime: Annotated[
        str,
        typer.Option(help="Where to run: auto, local or compose.", envvar="DEPLOY_RUNTIME"),
    ] = "auto",
    month: Annotated[
        str | None, typer.Option(help="Score this month (YYYY-MM).", envvar="DEPLOY_BATCH_MONTH")
    ] = None,
    run_date: Annotated[
        str | None,
        typer.Option(
            "--run-date",
            help="Score the month (or --window) before this date, as the course's get_paths.",
            envvar="DEPLOY_BATCH_RUN_DATE",
        ),
    ] = None,
    first: Annotated[
        str | None,
        typer.Option(
            "--from", help="Backfill from this month (YYYY-MM).", envvar="DEPLOY_BATCH_FROM"
        ),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option("--to", help="Backfill to this month, included.", envvar="DEPLOY_BATCH_TO"),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="Rides: parquet path or s3:// template, or a database URL "
            "[default: DATA_DIR/{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet].",
            envvar="DEPLOY_BATCH_INPUT",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Predictions: .parquet path or s3:// template, or a database URL "
            "[default: output/taxi_type={taxi_type}/year={year:04d}/month={month:02d}/"
            "{model_version}.parquet].",
            envvar="DEPLOY_BATCH_OUTPUT",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            help="Input table for a database input [default: trips].", envvar="DEPLOY_BATCH_TABLE"
        ),
    ] = None,
    output_table: Annotated[
        str | None,
        typer.Option(
            help="Output table for a database output [default: predictions].",
            envvar="DEPLOY_BATCH_OUTPUT_TABLE",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="1h or 1d: score the hour/day before --run-date (database input).",
            envvar="DEPLOY_BATCH_WINDOW",
        ),
    ] = None,
    taxi_type: Annotated[
        str | None,
        typer.Option(
            help="{taxi_type} in templates [default: green].", envvar="DEPLOY_BATCH_TAXI_TYPE"
        ),
    ] = None,
    model: ModelOption = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(help="Rows per chunk (bounds memory).", envvar="DEPLOY_BATCH_CHUNK_ROWS"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summaries as JSON lines on stdout.")
    ] = False,
    bake: BakeOption = False,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or dask (a Dask cluster).", envvar="DEPLOY_BATCH_ENGINE"
        ),
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(
            help="With --engine dask: start a local cluster of N worker processes for the run "
            "(default 2).",
            show_default=False,
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="With --engine dask: use the existing cluster at this address (tcp://host:8786).",
            envvar="DEPLOY_DASK_SCHEDULER",
        ),
    ] = None,
) -> None:
    """Score an interval's rides and write predictions out, then exit (cron-friendly).

    Example: deploy batch --runtime local --month 2021-03 --engine dask --workers 2
    """
    if ctx.invoked_subcommand is not None:
        return
    from deploy_modes.batch.intervals import resolve_intervals
    from deploy_modes.batch.runner import BatchRun, run_intervals
    from deploy_modes.batch.settings import BatchSettings
    from deploy_modes.cli.runtime import compose_run, resolve_runtime
    from deploy_modes.core.errors import DeployError

    settings = BatchSettings()
    options = {
        "month": month,
        "run_date": run_date,
        "first": first,
        "last": last,
        "input": input if input is not None else settings.input,
        "output": output or settings.output,
        "table": table or settings.table,
        "output_table": output_table or settings.output_table,
        "window": window if window is not None else settings.window,
        "taxi_type": taxi_type or settings.taxi_type,
        "model": model,
        "chunk_rows": chunk_rows if chunk_rows is not None else settings.chunk_rows,
    }
    # Check the interval options before choosing a runtime: a typo fails the same everywhere.
    intervals = resolve_intervals(
        month=month, run_date=run_date, first=first, last=last, window=options["window"]
    )
    if resolve_runtime(runtime) == "compose":
        if engine != "local":
            raise DeployError("--engine dask runs with --runtime local (no compose stack yet)")
        compose_run("batch", **options, bake=bake)
        return
    # With --json, stdout carries only the summaries; messages go to stderr.
    tell = (lambda msg: err_console.print(f"· {msg}", highlight=False)) if as_json else say
    batch_run = BatchRun(
        input=options["input"],
        output=options["output"],
        table=options["table"],
        output_table=options["output_table"],
        taxi_type=options["taxi_type"],
        chunk_rows=options["chunk_rows"],
        partition_rows=settings.partition_rows,
        engine=engine,
        workers=workers,
        scheduler=scheduler,
    )
    with _progress_bars() as progress:
        summaries = run_intervals(intervals, batch_run, model=model, say=tell, progress=progress)
    for summary in summaries:
        if as_json:
            typer.echo(json.dumps(summary.to_dict()))
        else:
            say(summary.line())
