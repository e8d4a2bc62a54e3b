"""Facts about the NYC TLC trip files: the columns we need, the yellow names, month names.

Pure and free of pandas and pyarrow, so the batch readers (arrow and SQL) and the pandas
reader of :mod:`deploy_modes.core.data` share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from deploy_modes.core.errors import DataError

__all__ = [
    "DROPOFF",
    "NUMERIC_COLUMNS",
    "PICKUP",
    "REQUIRED_COLUMNS",
    "TIME_COLUMNS",
    "YELLOW_ALIASES",
    "month_file",
    "parse_month",
    "yellow_renames",
]

PICKUP, DROPOFF = "lpep_pickup_datetime", "lpep_dropoff_datetime"
TIME_COLUMNS = (PICKUP, DROPOFF)
NUMERIC_COLUMNS = ("PULocationID", "DOLocationID", "trip_distance")
REQUIRED_COLUMNS = [*TIME_COLUMNS, *NUMERIC_COLUMNS]
# Yellow-taxi files name the times tpep_*; everything else we read has the same name.
YELLOW_ALIASES = {"tpep_pickup_datetime": PICKUP, "tpep_dropoff_datetime": DROPOFF}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def yellow_renames(names: Iterable[str]) -> dict[str, str]:
    """Return the renames (yellow to green) that make a yellow file's columns look green."""
    present = set(names)
    return {
        yellow: green
        for yellow, green in YELLOW_ALIASES.items()
        if yellow in present and green not in present
    }


def parse_month(text: str, option: str = "month") -> tuple[int, int]:
    """Parse ``YYYY-MM`` into ``(year, month)``; the error names ``option``."""
    match = _MONTH.match(str(text).strip())
    # Year 0 has no calendar month in Python's datetime: refuse it here, not in a traceback.
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise DataError(f"{option} must look like YYYY-MM (e.g. 2021-03), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def month_file(year: int, month: int, taxi_type: str = "green") -> str:
    """Return the TLC file name of a month, e.g. ``green_tripdata_2021-03.parquet``."""
    return f"{taxi_type}_tripdata_{year:04d}-{month:02d}.parquet"
