"""``deploy compare``: the three modes measured side by side on the same rides."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from deploy_modes.cli.console import console, progress, say
from deploy_modes.cli.runtime import ModelOption, resolve_runtime
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import sigterm_as_interrupt

__all__ = ["DEFAULT_OUT", "DEFAULT_RIDES", "compare", "run_compare"]

DEFAULT_RIDES = 10_000
DEFAULT_OUT = Path("compare")


def _check_out(out: Path) -> None:
    """Fail before anything starts when ``out`` cannot hold the report."""
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} is a file: give a directory")
    for parent in out.parents:  # the first existing ancestor must be a directory
        if parent.exists():
            if not parent.is_dir():
                raise DeployError(f"--out {out}: {parent} is a file, not a directory")
            break


def _make_out(out: Path) -> Path:
    """Create ``out`` and its ``logs`` directory; return the logs directory."""
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create --out {out}: {exc.strerror}") from None
    return out / "logs"


def run_compare(
    rides: int = DEFAULT_RIDES,
    out: Path = DEFAULT_OUT,
    input: str | None = None,
    model: str | None = None,
    seed: int = 42,
    concurrency: int = 8,
    workers: int | None = None,
    shards: int = 2,
    runtime: str = "local",
) -> bool:
    """Run the three modes on the same rides, write the report; return whether they agree."""
    from deploy_modes.cli.comparison import agreement, prepare_rides, run_batch, run_stream, run_web
    from deploy_modes.cli.report import (
        Report,
        ratios_line,
        rich_table,
        rides_text,
        write_report,
    )
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.demo import ensure_model
    from deploy_modes.core.settings import CoreSettings

    _check_out(out)
    if input and not input.startswith("s3://"):
        if Path(input).is_dir():
            raise DeployError(f"--input {input} is a directory: give a TLC parquet month file")
        if not Path(input).is_file():
            raise DeployError(f"--input {input} does not exist: give a TLC parquet month")
    # A model the user named must exist: only the default location gets a demo model.
    location = model or ensure_model(CoreSettings(), say)
    loaded = load_model(location)  # a broken model fails here, in one line, before any mode
    if "://" not in location:
        location = str(Path(location).resolve())  # the children run with the same cwd, but be safe
    say(f"model {loaded.name} version {loaded.version} from {location}")
    log_dir = _make_out(out)
    workdir = Path(tempfile.mkdtemp(prefix="deploy-compare-"))
    try:
        with sigterm_as_interrupt():
            ride_set = prepare_rides(rides, seed, workdir, input)
            dropped = (
                f" ({ride_set.dropped:,} rows skipped by the filter)" if ride_set.dropped else ""
            )
            say(f"{len(ride_set):,} rides from {ride_set.source}{dropped}")
            if runtime == "compose":
                from deploy_modes.cli.compose_comparison import run_compose

                results = run_compose(
                    ride_set,
                    location,
                    say,
                    progress,
                    concurrency=concurrency,
                    workers=workers,
                    shards=shards,
                )
            else:
                results = [
                    run_batch(ride_set, location, workdir, log_dir, say),
                    run_web(ride_set, location, log_dir, say, progress, concurrency, workers),
                    run_stream(ride_set, location, workdir, log_dir, say, progress, shards),
                ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    agreed = agreement(ride_set, results)
    report = Report(
        rides=ride_set,
        results=results,
        agreement=agreed,
        runtime=runtime,
        model={"name": loaded.name, "version": loaded.version, "location": location},
        seed=seed,
    )
    paths = write_report(report, out)
    console.print(rich_table(report))
    console.print(ratios_line(report), highlight=False)
    for result in results:
        for error in result.errors[:5]:
            console.print(f"[yellow]{result.mode}:[/yellow] {error}", highlight=False)
    if agreed.ok:
        console.print(
            f"[bold green]agreement[/bold green]: all {rides_text(agreed.compared)}, "
            f"max |diff| {agreed.max_diff:.1e} (tolerance 1e-9)",
            highlight=False,
        )
    else:
        console.print(
            f"[bold red]disagreement[/bold red] on {len(agreed.mismatches)} rides "
            f"(max |diff| {agreed.max_diff:.3g}):",
            highlight=False,
        )
        for m in agreed.mismatches[:10]:
            console.print(
                f"  {m['ride_id']}: batch {m.get('batch')} web {m.get('web')} "
                f"stream {m.get('stream')} ({m['reason']})",
                highlight=False,
            )
    console.print(
        f"wrote {paths['json']}, {paths['md']}, {paths['png']} (logs in {log_dir})",
        highlight=False,
    )
    return agreed.ok


def compare(
    rides: Annotated[
        int,
        typer.Option(
            min=1,
            max=200_000,
            envvar="DEPLOY_COMPARE_RIDES",
            help="Rides sent through every mode (generated with --seed unless --input).",
        ),
    ] = DEFAULT_RIDES,
    runtime: Annotated[
        str, typer.Option(envvar="DEPLOY_RUNTIME", help="Where to run: auto, local or compose.")
    ] = "auto",
    out: Annotated[
        Path,
        typer.Option(
            envvar="DEPLOY_COMPARE_OUT", help="Directory for compare.json, .md, .png and logs."
        ),
    ] = DEFAULT_OUT,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            envvar="DEPLOY_COMPARE_INPUT",
            help="A TLC parquet month to take the rides from (its first --rides valid ones).",
        ),
    ] = None,
    model: ModelOption = None,
    seed: Annotated[
        int, typer.Option(min=0, envvar="DEPLOY_SEED", help="Seed for the generated rides.")
    ] = 42,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=256, envvar="DEPLOY_COMPARE_CONCURRENCY", help="Concurrent web clients."
        ),
    ] = 8,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            envvar="DEPLOY_WEB_WORKERS",
            help="gunicorn workers (default: the web mode's).",
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(min=1, max=16, envvar="DEPLOY_STREAM_SHARDS", help="Kinesis shards."),
    ] = 2,
) -> None:
    """Measure batch, web and stream on the same rides, side by side.

    Brings each mode up, sends it the same rides, checks every prediction agrees, tears it
    down, prints a table and writes compare.json, compare.md and compare.png to --out.

    Example: deploy compare --rides 2000 --runtime local
    """

    # Not compose_run("compare"): compare drives the three stacks itself, one after the other.
    chosen = resolve_runtime(runtime)
    ok = run_compare(rides, out, input, model, seed, concurrency, workers, shards, chosen)
    if not ok:
        raise typer.Exit(1)
