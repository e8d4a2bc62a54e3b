"""``deploy batch``: score a month, the interval before a run date, or a backfill, then exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape

from deploy_modes.batch.engines import Engine
from deploy_modes.cli.console import console, err_console, isatty, say, typer_app
from deploy_modes.cli.options import (
    BakeOption,
    ModelOption,
    ModelSha256Option,
    RuntimeOption,
    TrustPickleOption,
    TrustTypeOption,
    chosen_runtime,
    chosen_trust,
)

__all__ = ["app", "run"]

_PARTS_NOT_IN_COMPOSE = "--output-parts runs with --runtime local, not in the compose stack"

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
    runtime: RuntimeOption = None,
    month: Annotated[str | None, typer.Option(help="Score this month (YYYY-MM).")] = None,
    run_date: Annotated[
        str | None,
        typer.Option(
            "--run-date",
            help="Score the month (or --window) before this date, as the course's get_paths.",
        ),
    ] = None,
    first: Annotated[
        str | None,
        typer.Option("--from", help="Backfill from this month (YYYY-MM)."),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option("--to", help="Backfill to this month, included."),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="Rides: parquet path or s3:// template, or a database URL "
            "(default: DATA_DIR/{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--out",
            "--output",  # the name before the convention: scripts keep working
            help="Predictions: .parquet path or s3:// template, or a database URL "
            "(default: output/taxi_type={taxi_type}/year={year:04d}/month={month:02d}/"
            "{model_version}.parquet).",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="Input table for a database input (default: trips)."),
    ] = None,
    output_table: Annotated[
        str | None,
        typer.Option(
            "--out-table",
            "--output-table",
            help="Output table for a database output (default: predictions).",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="1h or 1d: score the hour/day before --run-date (database input).",
        ),
    ] = None,
    taxi_type: Annotated[
        str | None,
        typer.Option(help="{taxi_type} in templates (default: green)."),
    ] = None,
    model: ModelOption = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(help="Rows per chunk (bounds memory)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summaries as JSON lines on stdout.")
    ] = False,
    bake: BakeOption = None,
    engine: Annotated[
        Engine | None,
        typer.Option(
            help="local (this process) or dask (a Dask cluster) "
            "(env DEPLOY_BATCH_ENGINE; default: local).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
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
            help="With --engine dask: use the existing cluster at this address, "
            "e.g. tcp://host:8786 (env DEPLOY_DASK_SCHEDULER).",
            show_default=False,
        ),
    ] = None,
    output_parts: Annotated[
        bool | None,
        typer.Option(
            "--output-parts",
            help="With --engine dask: write the output as a folder of parquet parts "
            "(part-00000.parquet, ...), one per partition, written by the workers "
            "(env DEPLOY_BATCH_OUTPUT_PARTS).",
            show_default=False,
        ),
    ] = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Score an interval's rides and write predictions out, then exit (cron-friendly).

    Example: deploy batch --runtime local --month 2021-03 --engine dask --workers 2
    """
    if ctx.invoked_subcommand is not None:
        return
    from deploy_modes.batch.intervals import resolve_intervals
    from deploy_modes.batch.runner import BatchRun, run_intervals
    from deploy_modes.batch.settings import BatchSettings
    from deploy_modes.compose.runtime import Runtime
    from deploy_modes.core.errors import UsageError
    from deploy_modes.core.settings import load_settings

    settings = load_settings(
        BatchSettings,
        month=month,
        run_date=run_date,
        first=first,
        last=last,
        input=input,
        output=output,
        table=table,
        output_table=output_table,
        window=window,
        taxi_type=taxi_type,
        chunk_rows=chunk_rows,
        engine=engine,
        workers=workers,
        scheduler=scheduler,
        output_parts=output_parts,
    )
    # Check the interval options before choosing a runtime: a typo fails the same everywhere.
    intervals = resolve_intervals(
        month=settings.month,
        run_date=settings.run_date,
        first=settings.first,
        last=settings.last,
        window=settings.window,
    )
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    # The stack's job takes only the options it knows: refuse the folder layout rather than
    # quietly write one file; before asking Docker when compose was asked for by name.
    if settings.output_parts and runtime is Runtime.compose:
        raise UsageError(_PARTS_NOT_IN_COMPOSE)
    if chosen_runtime(runtime) is Runtime.compose:
        if settings.output_parts:
            raise UsageError(_PARTS_NOT_IN_COMPOSE)
        _run_in_compose(settings, model, bake, trust)
        return
    # With --json, stdout carries only the summaries; messages go to stderr.
    tell = (
        (lambda msg: err_console.print(f"· {msg}", highlight=False, markup=False))
        if as_json
        else say
    )
    batch_run = BatchRun(
        input=settings.input,
        output=settings.output,
        table=settings.table,
        output_table=settings.output_table,
        taxi_type=settings.taxi_type,
        chunk_rows=settings.chunk_rows,
        partition_rows=settings.partition_rows,
        engine=settings.engine,
        workers=settings.workers,
        scheduler=settings.scheduler,
        output_parts=settings.output_parts,
    )
    with _progress_bars() as progress:
        summaries = run_intervals(
            intervals, batch_run, model=model, say=tell, progress=progress, trust=trust
        )
    for summary in summaries:
        if as_json:
            typer.echo(json.dumps(summary.to_dict()))
        else:
            say(summary.line())


def _run_in_compose(settings: Any, model: str | None, bake: bool | None, trust: Any) -> None:
    """Run the month in the batch stack and say where the predictions are."""
    import contextlib

    from deploy_modes.compose.stacks import BatchStack, list_objects, run_batch
    from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS

    options = BatchStack(
        month=settings.month,
        input=settings.input,
        output=settings.output if "output" in settings.model_fields_set else None,
        model=model,
        bake=bake,
        trust=trust,
        run_date=settings.run_date,
        first=settings.first,
        last=settings.last,
        window=settings.window,
        engine=settings.engine,
        workers=settings.workers,
        scheduler=settings.scheduler,
        partition_rows=settings.partition_rows,
    )
    done = run_batch(options)
    console.print(
        f"[bold green]batch job done[/bold green] ({done.project}): "
        f"predictions in {escape(done.prefix)}"
    )
    with contextlib.suppress(Exception):  # listing is a courtesy; the job already succeeded
        for uri, size in list_objects(done.prefix, done.endpoint):
            console.print(f"  {uri}  ({size:,} bytes)", highlight=False, markup=False)
    if done.scheduler:
        console.print(
            f"the Dask scheduler and its {done.workers} workers run until deploy down batch: "
            f"{done.scheduler}",
            highlight=False,
            markup=False,
        )
    keys = " ".join(f"{k}={v}" for k, v in EMULATOR_CREDENTIALS.items())
    console.print(
        f"the emulator keeps them while the stack runs: {done.endpoint}\nnext:\n"
        f"  {keys} aws --endpoint-url {done.endpoint} s3 ls --recursive {done.prefix}\n"
        "  deploy logs batch      deploy down batch",
        highlight=False,
        markup=False,
    )
