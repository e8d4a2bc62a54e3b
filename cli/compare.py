"""``deploy compare``: the three modes measured side by side on the same rides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from deploy_modes.cli.console import console, progress, say
from deploy_modes.cli.options import (
    ModelOption,
    ModelSha256Option,
    RuntimeOption,
    ShardsOption,
    TrustPickleOption,
    TrustTypeOption,
    WorkersOption,
    chosen_runtime,
    chosen_trust,
    model_location,
)
from deploy_modes.compare.harness import DEFAULT_OUT, DEFAULT_RIDES, CompareRun, Outcome
from deploy_modes.compare.report import Report, ratios_line, rich_table, rides_text
from deploy_modes.compare.rides import MAX_RIDES

__all__ = ["compare"]


def compare(
    rides: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_RIDES,
            help="Rides sent through every mode (generated with --seed unless --input) "
            f"(env DEPLOY_COMPARE_RIDES; default: {DEFAULT_RIDES:,}).",
            show_default=False,
        ),
    ] = None,
    runtime: RuntimeOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Directory for compare.json, .md, .png and logs "
            f"(env DEPLOY_COMPARE_OUT; default: {DEFAULT_OUT}).",
            show_default=False,
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="A TLC parquet month to take the rides from (its first --rides valid ones): "
            "a path, s3:// or http(s):// URL (env DEPLOY_COMPARE_INPUT).",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seed for the generated rides (env DEPLOY_SEED; default: 42).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="Concurrent web clients (env DEPLOY_COMPARE_CONCURRENCY; default: 8).",
            show_default=False,
        ),
    ] = None,
    workers: WorkersOption = None,
    shards: ShardsOption = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Measure batch, web and stream on the same rides, side by side.

    Brings each mode up, sends it the same rides, checks every prediction agrees and equals
    the model's own predict (scored in a separate process; over 1e-9 fails the run), tears
    it down, prints a table and writes compare.json, compare.md and compare.png to --out.

    Example: deploy compare --rides 2000 --runtime local
    """
    from deploy_modes.compare.harness import check_paths, run_compare
    from deploy_modes.compare.settings import CompareSettings
    from deploy_modes.core.settings import CoreSettings, load_settings
    from deploy_modes.stream.settings import StreamSettings
    from deploy_modes.web.settings import WebSettings

    settings = load_settings(
        CompareSettings, rides=rides, out=out, input=input, concurrency=concurrency
    )
    web = load_settings(WebSettings, workers=workers)
    chosen = chosen_runtime(runtime)
    check_paths(settings.out, settings.input)
    run = CompareRun(
        model=model_location(model),
        rides=settings.rides,
        out=settings.out,
        input=settings.input,
        seed=load_settings(CoreSettings, seed=seed).seed,
        concurrency=settings.concurrency,
        # None: each mode's own default (the web image's, or one per CPU locally).
        workers=web.workers if "workers" in web.model_fields_set else None,
        shards=load_settings(StreamSettings, shards=shards).shards,
        runtime=chosen.value,
        trust=chosen_trust(trust_pickle, trust_type, model_sha256),
    )
    outcome = run_compare(run, say, progress)
    _print(outcome)
    if not outcome.report.ok:
        raise typer.Exit(1)


def _print_truth(report: Report) -> None:
    """Say whether every mode gave the model's own prediction."""
    truth = report.truth
    if truth is None:
        return
    if truth.ok:
        console.print(
            f"[bold green]reference[/bold green]: every mode gave the model's own predict, "
            f"max |diff| {truth.max_abs_diff:.1e} (tolerance 1e-9)",
            highlight=False,
        )
        return
    for mode, found in truth.wrong().items():
        console.print(
            f"[bold red]wrong[/bold red]: {mode} differs from the model's own predict on "
            f"{found.over_tolerance:,} rides (max |diff| {found.max_abs_diff:.3g})",
            highlight=False,
        )


def _print(outcome: Outcome) -> None:
    """Print the table, the ratios, the first errors and whether the modes agree."""
    report, agreed = outcome.report, outcome.report.agreement
    console.print(rich_table(report))
    console.print(ratios_line(report), highlight=False)
    for result in report.results:
        for error in result.errors[:5]:
            console.print(f"[yellow]{result.mode}:[/yellow] {escape(error)}", highlight=False)
    if agreed.ok:
        console.print(
            f"[bold green]agreement[/bold green]: all {rides_text(agreed.compared)}, "
            f"max |diff| {agreed.max_diff:.1e} (tolerance 1e-9)",
            highlight=False,
        )
    else:
        console.print(
            f"[bold red]disagreement[/bold red] on {agreed.mismatch_count:,} rides "
            f"(max |diff| {agreed.max_diff:.3g}):",
            highlight=False,
        )
        for m in agreed.mismatches[:10]:
            console.print(
                f"  {m['ride_id']}: batch {m.get('batch')} web {m.get('web')} "
                f"stream {m.get('stream')} ({m['reason']})",
                highlight=False,
            )
    _print_truth(outcome.report)
    paths = outcome.paths
    console.print(
        f"wrote {paths['json']}, {paths['md']}, {paths['png']} (logs in {outcome.log_dir})",
        highlight=False,
        markup=False,
    )
