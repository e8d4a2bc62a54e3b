"""Make sure a model exists: generate demo months and train on them when none is there yet."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from deploy_modes.core.artifact import artifact_exists
from deploy_modes.core.errors import DataError
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import http_exists, is_http, is_s3, join_location
from deploy_modes.core.tlc import month_file, parse_month

__all__ = ["ensure_model", "ensure_month"]


def ensure_month(
    data_dir: str | os.PathLike[str],
    month: str,
    rows: int,
    seed: int,
    say: Callable[[str], None],
    option: str = "month",
) -> str:
    """Return where a month's parquet file is, generating it (and saying so) if missing.

    An http(s) ``data_dir`` (the TLC site) is only read: a month missing there is an error.
    """
    year, mon = parse_month(month, option)  # before importing pandas: a typo fails fast
    location = join_location(data_dir, month_file(year, mon))
    if is_http(location):
        # A HEAD, no body: both months are known to be there before either is downloaded.
        if not http_exists(location):
            raise DataError(
                f"no data for {month} at {location} (not found): months are read from a URL, "
                "never generated into it; a local data dir gets missing months generated"
            )
        return location
    from deploy_modes.core.data import generate_month, write_month

    path = Path(location)
    if not path.is_file():
        say(f"no data for {month} at {path}: generating {rows:,} demo rides")
        write_month(generate_month(year, mon, rows=rows, seed=seed), path)
    return location


def ensure_model(settings: CoreSettings, say: Callable[[str], None] = print) -> str:
    """Return the model location, training a demo model first if nothing is there."""
    location = settings.model_location
    if is_s3(location) or artifact_exists(location):
        return location
    from deploy_modes.core.training import train_model

    say(f"no model at {location}: training a demo model on generated data")
    # Named as the user sets them; both are checked before either month is generated.
    wanted = {"DEPLOY_TRAIN_MONTH": settings.train_month, "DEPLOY_VAL_MONTH": settings.val_month}
    for option, month in wanted.items():
        parse_month(month, option)
    months = [
        ensure_month(settings.data_dir, month, settings.demo_rows, settings.seed, say, option)
        for option, month in wanted.items()
    ]
    result = train_model(*months, location, progress=say)
    say(
        f"trained model {result.manifest['version']} "
        f"(validation RMSE {result.manifest['metrics']['val_rmse']:.2f} min) at {location}"
    )
    return location
