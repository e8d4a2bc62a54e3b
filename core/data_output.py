"""Where ``deploy data`` writes a month: what the target says, parquet or a SQL table, else no.

Checked before anything is generated (:func:`check_target`), so a target that cannot be
written costs nothing; ``sqlite:/rides.db`` (one slash: a path) is refused, not written as a
folder ``sqlite:`` holding a parquet file named ``rides.db``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import is_s3

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_TABLE", "check_target", "write_trips"]

DEFAULT_TABLE = "trips"
_PARQUET = ".parquet"
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CHUNK_ROWS = 10_000

Kind = Literal["parquet", "sql"]


def check_target(target: str, table: str = DEFAULT_TABLE) -> Kind:
    """Return how ``target`` is written, or raise one line saying what it should be."""
    # One list of database schemes: the batch layer's, which reads what this writes.
    from deploy_modes.batch.locations import SQL_SCHEMES, is_sql

    scheme = _URL_SCHEME.match(target)
    if is_sql(target):
        if not _TABLE.match(table):
            raise DeployError(f"--table must be a plain SQL name like trips, got {table!r}")
        return "sql"
    if scheme and scheme.group(1).split("+")[0].lower() in SQL_SCHEMES:
        raise DeployError(
            f"{target!r} is not a database URL: write {scheme.group(1)}:///file.db "
            "(three slashes) or postgresql+psycopg://user:pass@host/db"
        )
    if "://" in target and not is_s3(target):
        raise DeployError(
            f"cannot write trips to {target!r}: give a .parquet path or s3:// URI, "
            "or a database URL (sqlite:///rides.db, postgresql+psycopg://...)"
        )
    if PurePosixPath(target).suffix.lower() != _PARQUET:
        raise DeployError(
            f"cannot write trips to {target!r}: deploy data writes TLC .parquet files or a "
            "database table (sqlite:///rides.db --table trips); name the file *.parquet"
        )
    return "parquet"


def write_trips(frame: pd.DataFrame, target: str, table: str = DEFAULT_TABLE) -> None:
    """Write ``frame`` as the target says: TLC parquet, or table ``table`` replaced at once."""
    if check_target(target, table) == "parquet":
        from deploy_modes.core.data import write_month

        write_month(frame, target)
        return
    _write_table(frame, target, table)


def _write_table(frame: pd.DataFrame, url: str, table: str) -> None:
    """Replace ``table`` in one transaction: a failure leaves the previous table whole."""
    # The batch layer owns SQL engines (psycopg for postgresql://, SQLite folders, messages).
    import sqlalchemy as sa

    from deploy_modes.batch.locations import one_line, safe_url, sink_engine, sql_url

    engine = sink_engine(sql_url(url))
    try:
        with engine.begin() as connection:
            frame.to_sql(table, connection, if_exists="replace", index=False, chunksize=_CHUNK_ROWS)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise DeployError(
            f"cannot write table {table} at {safe_url(url)}: {one_line(exc)}"
        ) from None
    finally:
        engine.dispose()
