"""Where rides come from and predictions go: classify URIs, open SQL engines, word errors."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.storage import is_http, is_s3, local_file, parse_s3

__all__ = [
    "SQL_SCHEMES",
    "check_location",
    "check_source",
    "is_http",
    "is_sql",
    "one_line",
    "safe_url",
    "sink_engine",
    "source_engine",
    "sql_url",
]

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
PARQUET_SUFFIX = ".parquet"


def is_sql(location: str) -> bool:
    """Return whether ``location`` is a SQLAlchemy database URL."""
    match = _URL_SCHEME.match(location)
    return bool(match) and match.group(1).split("+")[0].lower() in SQL_SCHEMES


def sql_url(location: str) -> str:
    """Return the SQLAlchemy URL, using psycopg 3 for a plain ``postgresql://``."""
    for plain in ("postgresql://", "postgres://"):
        if location.startswith(plain):
            return "postgresql+psycopg://" + location[len(plain) :]
    return location


def check_location(location: str, *, readable: bool = False) -> None:
    """Refuse URIs no reader (``readable``) or writer understands, with one clear line."""
    if not location or not str(location).strip():
        raise DeployError("empty location: give a path, an s3:// URI or a database URL")
    match = _URL_SCHEME.match(location)
    web = readable and is_http(location)
    if match and not is_sql(location) and not is_s3(location) and not web:
        inputs = "an http(s):// parquet URL, " if readable else ""
        raise DeployError(
            f"unsupported location {location!r}: use a local path, s3://bucket/key, "
            f"{inputs}or a database URL (sqlite:///file.db, postgresql://...)"
        )
    if is_s3(location) and not parse_s3(location).key:
        raise DeployError(f"S3 URI has no key: {location!r}")


def check_source(location: str) -> None:
    """Refuse an input batch cannot read before any model is trained or loaded: cheap first."""
    check_location(location, readable=True)
    if is_sql(location):
        return
    path = urlparse(location).path if _URL_SCHEME.match(location) else location
    suffix = PurePosixPath(path).suffix
    # A name without a suffix may still be parquet (the reader judges); one naming another
    # format (rides.csv, rides.db) is refused now, not after a demo model is trained.
    if suffix and suffix.lower() != PARQUET_SUFFIX:
        hint = (
            f" (a SQLite file? use sqlite:///{location} --table trips)"
            if suffix
            in (
                ".db",
                ".sqlite",
                ".sqlite3",
            )
            else ""
        )
        raise DeployError(
            f"input {location!r} is not parquet ({suffix}): batch reads TLC .parquet files "
            f"(a path, s3:// or http(s):// URL) or a database table{hint}"
        )
    if not _URL_SCHEME.match(location):
        local_file(location, "input file")


def one_line(exc: BaseException) -> str:
    """Return an exception's message as one short line."""
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def safe_url(url: str) -> str:
    """Return a database URL fit for messages (password hidden)."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL too broken to parse is shown as given, minus nothing secret
        return url.split("@")[-1]


def source_engine(url: str) -> Any:
    """Return an engine for a source database, which must exist."""
    import sqlalchemy as sa

    parsed = _parse_url(url)
    if _sqlite_file(parsed) and not Path(parsed.database).is_file():
        # create_engine would silently create an empty database; a source must exist.
        raise DataError(f"SQLite database does not exist: {parsed.database}")
    try:
        return sa.create_engine(parsed)
    except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError) as exc:
        raise DeployError(f"cannot use database URL {safe_url(url)}: {one_line(exc)}") from exc


def sink_engine(url: str) -> Any:
    """Return an engine for predictions; unlike a source, a new SQLite file may be created."""
    import sqlalchemy as sa

    parsed = _parse_url(url)
    if _sqlite_file(parsed):
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeployError(f"cannot create the folder of {parsed.database}: {exc}") from exc
        return sa.create_engine(parsed)
    return source_engine(url)


def _parse_url(url: str) -> Any:
    """Return SQLAlchemy's parsed URL or a one-line error naming the URL."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DeployError(f"bad database URL {url!r}: {one_line(exc)}") from exc


def _sqlite_file(parsed: Any) -> bool:
    return parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
