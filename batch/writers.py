"""Sinks for predictions, chosen by URI; each run of an interval replaces its output atomically.

A writer opens a :class:`Session` per interval. Nothing is visible until ``commit``: parquet is
streamed into a hidden temp file that is renamed into place (local) or uploaded as one object
(S3, where even a multipart upload appears only once complete); SQL rows go in inside one
transaction that first deletes the interval's previous rows. A killed job leaves the old output
(or none), never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.locations import (
    check_location,
    is_sql,
    one_line,
    safe_url,
    sink_engine,
    sql_url,
)
from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.storage import (
    aws_client,
    create_temp,
    fsync_folder,
    is_s3,
    os_cause,
    parse_s3,
    s3_error,
)

__all__ = [
    "INTERVAL_COLUMN",
    "OUTPUT_SCHEMA",
    "FileWriter",
    "ParquetWriter",
    "Session",
    "SqlWriter",
    "TableFile",
    "Writer",
    "open_parquet",
    "open_writer",
]

OUTPUT_SCHEMA = pa.schema(
    [
        ("ride_id", pa.string()),
        ("lpep_pickup_datetime", pa.timestamp("us")),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("actual_duration", pa.float64()),
        ("predicted_duration", pa.float64()),
        ("diff", pa.float64()),
        ("model_version", pa.string()),
    ]
)
INTERVAL_COLUMN = "batch_interval"  # SQL only: which run wrote the row, so a rerun replaces it
_TMP_SUFFIX = ".tmp"
_DICTIONARY_COLUMNS = ["PULocationID", "DOLocationID", "model_version"]
_INSERT_ROWS = 20_000  # rows per INSERT: one statement per chunk would be too large a packet


class Session(Protocol):
    """One interval's output in progress."""

    def write(self, table: pa.Table) -> None:
        """Add scored rows."""
        ...

    def commit(self) -> None:
        """Make the output visible, replacing the interval's previous output."""
        ...

    def abort(self) -> None:
        """Drop everything written so far, leaving the previous output untouched."""
        ...


class TableFile(Protocol):
    """A file being written table by table; ``close`` finishes it (writes its footer)."""

    def write_table(self, table: pa.Table) -> None:
        """Append rows."""
        ...

    def close(self) -> None:
        """Finish the file."""
        ...


def open_parquet(path: str) -> TableFile:
    """Open the output's parquet file, encoded as every reader of a batch output sees it."""
    return pq.ParquetWriter(
        path,
        OUTPUT_SCHEMA,
        compression="snappy",
        # Dictionary-encoding unique ride ids and float columns costs more than it saves
        # (the writer tries, then falls back): encode only the low-cardinality columns.
        use_dictionary=_DICTIONARY_COLUMNS,
    )


class Writer(Protocol):
    """What the job needs from a sink."""

    def describe(self) -> str:
        """Return the destination for messages."""
        ...

    def begin(self, interval: Interval) -> Session:
        """Start replacing ``interval``'s output."""
        ...


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed run left next to ``path`` (hidden, so no reader saw them)."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f"{_temp_prefix(path)}*{_TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)


class _FileSession:
    def __init__(
        self, target: str, client: Any, open_file: Callable[[str], TableFile], durable: bool
    ) -> None:
        self.target = target
        self._client = client
        self._durable = durable
        if is_s3(target):
            self._loc = parse_s3(target)
            self._check_bucket()
            fd, self._tmp = tempfile.mkstemp(prefix="deploy-batch-out-", suffix=".parquet")
        else:
            path = Path(target)
            if path.is_dir():
                raise DeployError(f"output is a directory, not a file: {path}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DeployError(
                    f"cannot create output folder {path.parent}: {os_cause(exc)}"
                ) from exc
            try:
                _remove_stale_temps(path)
                # Created with the mode open() gives, as the renamed file is what readers see.
                fd, self._tmp = create_temp(path.parent, _temp_prefix(path), _TMP_SUFFIX)
            except OSError as exc:  # a read-only file system, no permission, ...
                raise self._os_error(exc) from exc
        os.close(fd)
        try:
            self._writer: TableFile | None = open_file(self._tmp)
        except OSError as exc:
            Path(self._tmp).unlink(missing_ok=True)
            raise self._os_error(exc) from exc

    def _os_error(self, exc: OSError) -> DeployError:
        """Return the one line for a failed local write: the output path and the cause."""
        return DeployError(f"cannot write {self.target}: {os_cause(exc)}")

    def _s3(self) -> Any:
        if self._client is None:
            self._client = aws_client("s3")
        return self._client

    def _check_bucket(self) -> None:
        """Fail before scoring, not after, when the bucket is missing."""
        try:
            self._s3().head_bucket(Bucket=self._loc.bucket)
        except Exception as exc:
            raise s3_error(exc, f"s3://{self._loc.bucket}") from exc

    def write(self, table: pa.Table) -> None:
        assert self._writer is not None
        try:
            self._writer.write_table(table)
        except OSError as exc:  # a full disk: the temp file is dropped by abort
            raise self._os_error(exc) from exc

    def commit(self) -> None:
        assert self._writer is not None
        try:
            writer, self._writer = self._writer, None
            # Closing writes the footer: a full disk may first show here.
            writer.close()
            if is_s3(self.target):
                try:
                    # upload_file goes multipart for big files; S3 shows the object only once
                    # the upload completes, so readers never see part of it.
                    self._s3().upload_file(self._tmp, self._loc.bucket, self._loc.key)
                except Exception as exc:
                    raise DeployError(f"upload to {self.target} failed: {one_line(exc)}") from exc
            else:
                if self._durable:
                    with open(self._tmp, "rb+") as handle:
                        os.fsync(handle.fileno())
                os.replace(self._tmp, self.target)
                if self._durable:
                    fsync_folder(Path(self.target).parent)  # the rename itself survives a crash
        except OSError as exc:
            raise self._os_error(exc) from exc
        finally:
            Path(self._tmp).unlink(missing_ok=True)

    def abort(self) -> None:
        if self._writer is not None:
            # Closing a half-written file may fail; it is deleted anyway.
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        Path(self._tmp).unlink(missing_ok=True)


class FileWriter:
    """Write each interval to one file, a local path or an ``s3://`` object, in any format.

    ``durable=False`` skips the ``fsync`` before the rename: for files that a crash makes
    useless anyway (the Dask engine's staged parts, which a rerun sweeps and writes again).
    """

    def __init__(
        self,
        location: str,
        client: Any = None,
        open_file: Callable[[str], TableFile] = open_parquet,
        durable: bool = True,
    ) -> None:
        self.location = location
        self._client = client
        self._open_file = open_file
        self._durable = durable

    def describe(self) -> str:
        """Return the output location."""
        return self.location

    def begin(self, interval: Interval) -> Session:
        """Start a hidden temp file for the interval."""
        return _FileSession(self.location, self._client, self._open_file, self._durable)


class ParquetWriter(FileWriter):
    """Write each interval to one parquet file: a local path or an ``s3://`` object."""

    def __init__(self, location: str, client: Any = None) -> None:
        super().__init__(location, client, open_parquet)


class _SqlSession:
    def __init__(self, writer: SqlWriter, interval: Interval) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self._writer = writer
        self._label = interval.label
        self._conn = writer.engine.connect()
        self._trans = self._conn.begin()
        try:
            table = writer.table
            self._conn.execute(sa.delete(table).where(table.c[INTERVAL_COLUMN] == self._label))
        except sa.exc.SQLAlchemyError as exc:
            self.abort()
            raise DeployError(f"cannot write to {writer.describe()}: {one_line(exc)}") from exc

    def write(self, table: pa.Table) -> None:
        labelled = table.append_column(INTERVAL_COLUMN, pa.repeat(self._label, table.num_rows))
        try:
            for start in range(0, labelled.num_rows, _INSERT_ROWS):
                rows = labelled.slice(start, _INSERT_ROWS).to_pylist()
                self._conn.execute(self._writer.table.insert(), rows)
        except self._sa.exc.SQLAlchemyError as exc:
            raise DeployError(
                f"cannot write to {self._writer.describe()}: {one_line(exc)}"
            ) from exc

    def commit(self) -> None:
        try:
            self._trans.commit()
        except self._sa.exc.SQLAlchemyError as exc:
            raise DeployError(
                f"cannot commit to {self._writer.describe()}: {one_line(exc)}"
            ) from exc
        finally:
            self._conn.close()

    def abort(self) -> None:
        try:
            if self._trans.is_active:
                self._trans.rollback()
        finally:
            self._conn.close()


class SqlWriter:
    """Write predictions to a SQL table keyed by ``ride_id``, one transaction per interval."""

    def __init__(self, url: str, table: str = "predictions") -> None:
        self.url = sql_url(url)
        self.table_name = table
        self._engine: Any = None
        self._table: Any = None

    def describe(self) -> str:
        """Return the destination as ``url#table`` without a password."""
        return f"{safe_url(self.url)}#{self.table_name}"

    @property
    def engine(self) -> Any:
        """Return the engine, creating the predictions table on first use."""
        if self._engine is None:
            self._engine = sink_engine(self.url)
            self._table = self._ensure_table()
        return self._engine

    @property
    def table(self) -> Any:
        """Return the predictions table."""
        _ = self.engine
        return self._table

    def _ensure_table(self) -> Any:
        import sqlalchemy as sa

        metadata = sa.MetaData()
        table = sa.Table(
            self.table_name,
            metadata,
            sa.Column("ride_id", sa.String(64), primary_key=True),
            sa.Column("lpep_pickup_datetime", sa.DateTime),
            sa.Column("PULocationID", sa.BigInteger),
            sa.Column("DOLocationID", sa.BigInteger),
            sa.Column("actual_duration", sa.Float),
            sa.Column("predicted_duration", sa.Float),
            sa.Column("diff", sa.Float),
            sa.Column("model_version", sa.String(64)),
            sa.Column(INTERVAL_COLUMN, sa.String(32), index=True),
        )
        try:
            metadata.create_all(self._engine, checkfirst=True)
            existing = sa.Table(self.table_name, sa.MetaData(), autoload_with=self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise DeployError(f"cannot use {self.describe()}: {one_line(exc)}") from exc
        missing = [c.name for c in table.columns if c.name not in existing.c]
        if missing:
            raise DataError(
                f"table {self.table_name!r} exists but lacks columns: {', '.join(missing)}"
            )
        return table

    def begin(self, interval: Interval) -> Session:
        """Open a transaction that first deletes the interval's previous rows."""
        return _SqlSession(self, interval)

    def close(self) -> None:
        """Close the connection pool."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def open_writer(location: str, table: str = "predictions", client: Any = None) -> Writer:
    """Return the writer for ``location``: a database URL, ``s3://`` or a local path."""
    check_location(location)
    if is_sql(location):
        return SqlWriter(location, table)
    if not location.endswith(".parquet"):
        raise DeployError(f"output must be a .parquet file or a database URL, got {location!r}")
    return ParquetWriter(location, client)
