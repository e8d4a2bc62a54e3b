"""``deploy data``, ``deploy train`` and ``deploy model show``: the core's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deploy_modes.cli.console import console, say, typer_app
from deploy_modes.core.settings import CoreSettings

__all__ = ["data", "model_app", "train"]

model_app = typer_app("Inspect model artifacts.")


def data(
    month: Annotated[str, typer.Option(help="Month to generate, YYYY-MM.")] = "2021-01",
    rows: Annotated[int, typer.Option(min=0, max=50_000_000, help="Rides to generate.")] = 80_000,
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (default: DATA_DIR/green_tripdata_YYYY-MM.parquet)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same rides.")] = 42,
    data_dir: Annotated[
        Path, typer.Option(envvar="DEPLOY_DATA_DIR", help="Where monthly files go.")
    ] = Path("data"),
) -> None:
    """Generate a month of NYC green-taxi trips in the real TLC parquet schema.

    Example: deploy data --month 2021-03 --rows 1000000
    """
    from deploy_modes.core.data import generate_month, month_file, parse_month, write_month

    year, mon = parse_month(month)
    target = out or data_dir / month_file(year, mon)
    started = time.perf_counter()
    with console.status(f"generating {rows:,} rides for {month}"):
        frame = generate_month(year, mon, rows=rows, seed=seed)
        write_month(frame, target)
    seconds = time.perf_counter() - started
    console.print(f"wrote {len(frame):,} rides to {target} in {seconds:.1f}s")


def train(
    train_month: Annotated[str, typer.Option(help="Month to fit on, YYYY-MM.")] = "2021-01",
    val_month: Annotated[str, typer.Option(help="Month to validate on, YYYY-MM.")] = "2021-02",
    regressor: Annotated[
        str,
        typer.Option(help="linear, ridge, lasso, random_forest, or a dotted class path."),
    ] = "linear",
    out: Annotated[
        str | None, typer.Option(help="Artifact directory (default: DEPLOY_MODEL_LOCATION).")
    ] = None,
    rows: Annotated[
        int, typer.Option(min=1, help="Rides per month to generate when a month is missing.")
    ] = 80_000,
    data_dir: Annotated[
        Path, typer.Option(envvar="DEPLOY_DATA_DIR", help="Where monthly files live.")
    ] = Path("data"),
) -> None:
    """Train the ride-duration model on one month and validate it on the next.

    Missing months are generated first (saying so).

    Example: deploy train --train-month 2021-01 --val-month 2021-02 --regressor linear
    """
    from deploy_modes.core.demo import ensure_month
    from deploy_modes.core.training import make_regressor, train_model

    settings = CoreSettings()
    make_regressor(regressor)  # an unknown name fails before any data is generated
    target = out or settings.model_location
    train_path = ensure_month(data_dir, train_month, rows, settings.seed, say)
    val_path = ensure_month(data_dir, val_month, rows, settings.seed, say)
    result = train_model(train_path, val_path, target, regressor=regressor, progress=say)
    manifest = result.manifest
    console.print(
        f"[bold green]trained[/bold green] {manifest['name']} version {manifest['version']}: "
        f"validation RMSE {manifest['metrics']['val_rmse']:.3f} min "
        f"(train {manifest['metrics']['train_rmse']:.3f}) -> {target}"
    )


@model_app.command("show")
def show(
    location: Annotated[str, typer.Argument(help="Artifact dir, pickle, MLflow dir or s3:// URI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw manifest JSON.")] = False,
) -> None:
    """Load a model (verifying it) and print its manifest.

    Example: deploy model show models/ride-duration
    """
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.scoring import ModelService

    loaded = load_model(location)
    manifest = loaded.manifest
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    table = Table(title=f"{loaded.name} @ {location}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in manifest.items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(key, text)
    table.add_row("prediction path", ModelService(loaded).fast_path)
    console.print(table)
