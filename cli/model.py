"""``deploy data``, ``deploy train`` and ``deploy model show``: the core's commands."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from deploy_modes.cli.console import console, say, typer_app, warnings_as_lines
from deploy_modes.cli.options import (
    ModelSha256Option,
    TrustPickleOption,
    TrustTypeOption,
    chosen_trust,
)
from deploy_modes.core.errors import DeployError
from deploy_modes.core.settings import CoreSettings, load_settings

__all__ = ["MAX_ROWS", "TIP_MODEL_LOCATION", "convert", "data", "model_app", "show", "train"]

TIP_MODEL_LOCATION = "models/tip-amount"
# About 10x the biggest real TLC month (yellow); more would need several GB of memory.
MAX_ROWS = 10_000_000


def _default(name: str) -> Any:
    return CoreSettings.model_fields[name].default


SeedOption = Annotated[
    int | None,
    typer.Option(
        help="Seed for generated rides: same seed, same rides (env DEPLOY_SEED; default: "
        f"{_default('seed')}).",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    str | None,
    typer.Option(
        help="Where monthly files live: a folder, or an http(s):// URL base to read them from "
        f"(env DEPLOY_DATA_DIR; default: {_default('data_dir')}).",
        show_default=False,
    ),
]

model_app = typer_app("Inspect model artifacts.\n\nExample: deploy model show models/ride-duration")


def data(
    month: Annotated[str, typer.Option(help="Month to generate, YYYY-MM.")] = "2021-01",
    rows: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_ROWS,
            help=f"Rides to generate (env DEPLOY_DEMO_ROWS; default: {_default('demo_rows'):,}).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="A .parquet path or s3:// URI, or a database URL (sqlite:///rides.db, "
            "postgresql+psycopg://...) to write a table (default: "
            "DATA_DIR/green_tripdata_YYYY-MM.parquet).",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str,
        typer.Option(help="Table to (re)create when --out is a database URL."),
    ] = "trips",
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Generate a month of NYC green-taxi trips in the real TLC parquet schema.

    Example: deploy data --month 2021-03 --rows 1000000
    """
    from deploy_modes.core.data import generate_month, month_file, parse_month
    from deploy_modes.core.data_output import check_target, write_trips
    from deploy_modes.core.storage import join_location

    settings = load_settings(CoreSettings, demo_rows=rows, seed=seed, data_dir=data_dir)
    rows, seed = settings.demo_rows, settings.seed
    year, mon = parse_month(month)
    target = out or join_location(settings.data_dir, month_file(year, mon))
    kind = check_target(target, table)  # before generating: a wrong target costs nothing
    started = time.perf_counter()
    with console.status(f"generating {rows:,} rides for {escape(month)}"):
        frame = generate_month(year, mon, rows=rows, seed=seed)
        write_trips(frame, target, table)
    seconds = time.perf_counter() - started
    where = f"table {table} of {_safe(target)}" if kind == "sql" else target
    console.print(
        f"wrote {len(frame):,} rides to {where} in {seconds:.1f}s", highlight=False, markup=False
    )


def _safe(url: str) -> str:
    from deploy_modes.batch.locations import safe_url

    return safe_url(url)


def train(
    train_month: Annotated[
        str | None,
        typer.Option(
            help="Month to fit on, YYYY-MM "
            f"(env DEPLOY_TRAIN_MONTH; default: {_default('train_month')}).",
            show_default=False,
        ),
    ] = None,
    val_month: Annotated[
        str | None,
        typer.Option(
            help="Month to validate on, YYYY-MM "
            f"(env DEPLOY_VAL_MONTH; default: {_default('val_month')}).",
            show_default=False,
        ),
    ] = None,
    regressor: Annotated[
        str,
        typer.Option(help="linear, ridge, lasso, random_forest, or a dotted class path."),
    ] = "linear",
    out: Annotated[
        str | None,
        typer.Option(
            help="Artifact directory or s3:// prefix to write "
            f"(env DEPLOY_MODEL_LOCATION; default: {_default('model_location')}).",
            show_default=False,
        ),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_ROWS,
            help="Rides per month to generate when a month is missing "
            f"(env DEPLOY_DEMO_ROWS; default: {_default('demo_rows'):,}).",
            show_default=False,
        ),
    ] = None,
    seed: SeedOption = None,
    data_dir: DataDirOption = None,
    target: Annotated[
        str,
        typer.Option(
            help="What to predict: duration (minutes) or tip_amount (dollars; default --out: "
            f"{TIP_MODEL_LOCATION})."
        ),
    ] = "duration",
) -> None:
    """Train the ride-duration (or tip) model on one month and validate it on the next.

    Missing months are generated first (saying so).

    Example: deploy train --train-month 2021-01 --val-month 2021-02 --regressor linear
    """
    from deploy_modes.core.data import parse_month
    from deploy_modes.core.demo import ensure_month
    from deploy_modes.core.naming import DURATION, TARGETS
    from deploy_modes.core.training import make_regressor, train_model, unit_label

    if target not in TARGETS:
        raise DeployError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    s = load_settings(
        CoreSettings,
        train_month=train_month,
        val_month=val_month,
        # The tip model has its own default place, so it never overwrites the duration model.
        model_location=out or (None if target == DURATION else TIP_MODEL_LOCATION),
        demo_rows=rows,
        seed=seed,
        data_dir=data_dir,
    )
    out = s.model_location
    # Bad arguments fail before any data is generated.
    make_regressor(regressor)
    parse_month(s.train_month)
    parse_month(s.val_month)
    train_path = ensure_month(s.data_dir, s.train_month, s.demo_rows, s.seed, say)
    val_path = ensure_month(s.data_dir, s.val_month, s.demo_rows, s.seed, say)
    with warnings_as_lines():  # e.g. a ConvergenceWarning: one line, not Python's format
        result = train_model(
            train_path, val_path, out, regressor=regressor, progress=say, target=target
        )
    manifest = result.manifest
    console.print(
        f"[bold green]trained[/bold green] {manifest['name']} version {manifest['version']}: "
        f"validation RMSE {manifest['metrics']['val_rmse']:.3f} {unit_label(target)} "
        f"(train {manifest['metrics']['train_rmse']:.3f}) -> {escape(out)}",
        highlight=False,
    )


@model_app.command("show")
def show(
    location: Annotated[str, typer.Argument(help="Artifact dir, pickle, MLflow dir or s3:// URI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw manifest JSON.")] = False,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Verify a model's hash, print its manifest and how it will be scored.

    The manifest and hash are read without deserializing the model; a pickle is then loaded
    (to show its scoring path) only with --trust-pickle.

    Example: deploy model show models/ride-duration
    """
    from deploy_modes.core.artifact import inspect_model, load_model
    from deploy_modes.core.naming import TARGETS
    from deploy_modes.core.scoring import ModelService

    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    manifest = inspect_model(location, trust.sha256)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    rows = [
        (key, json.dumps(value) if isinstance(value, dict | list) else str(value))
        for key, value in manifest.items()
    ]
    if manifest["format"] != "skops" and not trust.pickle:
        rows.append(("prediction path", "not checked: a pickle is loaded only with --trust-pickle"))
    else:
        with warnings_as_lines():  # a version mismatch is one clear line, not Python's format
            service = ModelService(load_model(location, trust), TARGETS)
        rows.append(("prediction path", service.scoring_path))
        rows.append(("why", service.scoring_reason))
        rows.append(("feature scheme", service.scheme.name))
    title = f"{manifest.get('name', 'model')} @ {location}"
    _print_rows(title, rows)


def _print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    if not console.is_terminal:  # pipes and logs get whole lines, never a wrapped hash
        for key, text in rows:
            console.print(f"{key}: {text}", highlight=False, markup=False)
        return
    # Text cells: a manifest or a location is data, never markup.
    table = Table(title=Text(title), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, text in rows:
        table.add_row(Text(key), Text(text))
    console.print(table)


@model_app.command("convert")
def convert(
    source: Annotated[str, typer.Argument(help="Pickle, MLflow dir or artifact to convert.")],
    out: Annotated[str, typer.Option(help="Artifact directory or s3:// prefix to write.")],
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Turn a pickle model into a skops artifact, checking its predictions are unchanged.

    Example: deploy model convert lin_reg.bin --out models/course --trust-pickle
    """
    from deploy_modes.core.conversion import convert_model

    with warnings_as_lines():
        result = convert_model(source, out, chosen_trust(trust_pickle, trust_type, model_sha256))
    manifest = result.manifest
    console.print(
        f"[bold green]converted[/bold green] {escape(source)} -> {escape(out)}: skops version "
        f"{manifest['version']}; predictions equal on {result.proof.rides:,} probe rides "
        f"(max |diff| {result.proof.max_diff:g})",
        highlight=False,
    )
    if result.trusted_types:
        names = ",".join(result.trusted_types)
        console.print(
            f"loading it needs these types trusted: DEPLOY_TRUSTED_TYPES={names}",
            highlight=False,
            markup=False,
        )
