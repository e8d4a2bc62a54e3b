"""Sources of rides, chosen by URI: parquet (local or ``s3://``) and SQL tables, read in chunks.

Every reader yields :class:`Chunk` objects of columns already converted for scoring (float
arrays with NaN for null), never the whole interval at once, so memory stays bounded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.locations import (
    check_location,
    is_sql,
    one_line,
    safe_url,
    source_engine,
    sql_url,
)
from deploy_modes.core.errors import DataError
from deploy_modes.core.storage import (
    aws_client,
    download,
    is_http,
    is_s3,
    local_file,
    parse_s3,
    s3_error,
)
from deploy_modes.core.tlc import (
    DROPOFF,
    NUMERIC_COLUMNS,
    PICKUP,
    REQUIRED_COLUMNS,
    TIME_COLUMNS,
    yellow_renames,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_PARTITION_ROWS",
    "Chunk",
    "ParquetReader",
    "Reader",
    "SqlReader",
    "open_reader",
]

DEFAULT_CHUNK_ROWS = 262_144
DEFAULT_PARTITION_ROWS = 1_048_576  # a Dask task's share: about 0.3 s of scoring per task
_US_PER_MINUTE = 60_000_000.0


@dataclass
class Chunk:
    """Consecutive source rows starting at row position ``offset``, ready for validation."""

    offset: int
    pickup: pa.Array  # timestamp[us], kept as Arrow so it is written back unchanged
    duration: np.ndarray  # minutes, NaN where a time is missing
    pu: np.ndarray
    do: np.ndarray
    distance: np.ndarray
    bad_type: np.ndarray | None = None  # rows whose values could not be read as numbers

    def __len__(self) -> int:
        return len(self.pu)


class Reader(Protocol):
    """What the job needs from a source."""

    def describe(self) -> str:
        """Return the source location for messages."""
        ...

    def open(self) -> int | None:
        """Check the source and return its row count if known (for progress)."""
        ...

    def chunks(self) -> Iterator[Chunk]:
        """Yield the rides in order, in chunks."""
        ...

    def close(self) -> None:
        """Release temp files and connections."""
        ...


def _float_column(array: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """Return a float64 numpy array with NaN for null."""
    try:
        return np.asarray(
            pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False), "float64"
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"column {name} cannot be read as numbers: {exc}") from exc


def _micros(array: pa.Array) -> np.ndarray:
    """Return microseconds since the epoch as float64, NaN for null."""
    if pa.types.is_null(array.type):
        return np.full(len(array), np.nan)
    tz = getattr(array.type, "tz", None)  # tz-aware values are UTC instants: keep the zone
    as_int = pc.cast(array, pa.timestamp("us", tz=tz), safe=False).view(pa.int64())
    return np.asarray(pc.cast(as_int, pa.float64()).to_numpy(zero_copy_only=False), "float64")


def _duration(pickup: pa.Array, dropoff: pa.Array) -> np.ndarray:
    return (_micros(dropoff) - _micros(pickup)) / _US_PER_MINUTE


def _schema_problems(fields: dict[str, str], kinds: dict[str, str], source: str) -> None:
    """Raise one error naming every missing column, then one naming every wrong-typed column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in fields]
    if missing:
        raise DataError(f"{source} lacks required columns: {', '.join(missing)}")
    wrong = [
        f"{c} is {fields[c]} (expected {'a timestamp' if c in TIME_COLUMNS else 'a number'})"
        for c in REQUIRED_COLUMNS
        if kinds[c] != ("time" if c in TIME_COLUMNS else "number")
    ]
    if wrong:
        raise DataError(f"{source} has wrong column types: {'; '.join(wrong)}")


def _arrow_kind(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "time"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_null(kind):  # an all-null column: every row is dropped and counted
        return "both"
    return "other"


class ParquetReader:
    """Read a parquet file (local or ``s3://``) row group by row group."""

    def __init__(self, location: str, chunk_rows: int = DEFAULT_CHUNK_ROWS, client: Any = None):
        self.location = location
        self.chunk_rows = chunk_rows
        self._client = client
        self._tmp: str | None = None
        self._file: pq.ParquetFile | None = None
        self._names: dict[str, str] = {c: c for c in REQUIRED_COLUMNS}

    def describe(self) -> str:
        """Return the source location."""
        return self.location

    def _local_path(self) -> str:
        if is_http(self.location):
            # Like S3: the month lands in a temp file (bounded memory), deleted by close().
            fd, self._tmp = tempfile.mkstemp(prefix="deploy-batch-", suffix=".parquet")
            with os.fdopen(fd, "wb") as sink:
                download(self.location, sink)
            return self._tmp
        if not is_s3(self.location):
            return str(local_file(self.location, "input file"))
        # Downloading to a temp file keeps memory bounded (the file, not RAM, holds the month).
        loc = parse_s3(self.location)
        s3 = self._client or aws_client("s3")
        fd, self._tmp = tempfile.mkstemp(prefix="deploy-batch-", suffix=".parquet")
        os.close(fd)
        try:
            s3.download_file(loc.bucket, loc.key, self._tmp)
        except Exception as exc:
            raise s3_error(exc, self.location, DataError) from exc
        return self._tmp

    def _open_file(self) -> pq.ParquetFile:
        """Return the parquet file (subclasses may read it another way, e.g. by byte ranges)."""
        return pq.ParquetFile(self._local_path())

    def open(self) -> int | None:
        """Check the file is readable parquet with the required columns; return its rows."""
        if self._file is not None:
            return int(self._file.metadata.num_rows)
        try:
            self._file = self._open_file()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.location} is not a readable parquet file: {one_line(exc)}"
            ) from exc
        schema = self._file.schema_arrow
        names = set(schema.names)
        # Yellow-taxi files name the times tpep_*: read them as the course's lpep_* columns.
        as_yellow = {green: yellow for yellow, green in yellow_renames(names).items()}
        self._names = {c: as_yellow.get(c, c) for c in REQUIRED_COLUMNS}
        by_name = {f.name: f for f in schema}
        by_name.update({c: schema.field(n) for c, n in self._names.items() if n in names})
        fields = {name: str(f.type) for name, f in by_name.items()}
        kinds = {name: _arrow_kind(f.type) for name, f in by_name.items()}
        kinds = {
            c: ("time" if c in TIME_COLUMNS else "number") if k == "both" else k
            for c, k in kinds.items()
        }
        _schema_problems(fields, kinds, self.location)
        return int(self._file.metadata.num_rows)

    def chunks(self) -> Iterator[Chunk]:
        """Yield the file's rows in chunks of at most ``chunk_rows``."""
        if self._file is None:
            self.open()
        assert self._file is not None
        offset = 0
        batches = self._batches()
        yield from self._chunks_of(batches, offset, lambda at: f"is corrupt after row {at:,}")

    def _batches(self, row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
        """Return the required columns' record batches (of the given row groups, else all)."""
        assert self._file is not None
        columns = [self._names[c] for c in REQUIRED_COLUMNS]
        return self._file.iter_batches(
            batch_size=self.chunk_rows, row_groups=row_groups, columns=columns
        )

    def _chunks_of(
        self, batches: Iterator[pa.RecordBatch], offset: int, what: Callable[[int], str]
    ) -> Generator[Chunk, None, int]:
        """Yield ``batches`` as chunks from row ``offset``; return the row after the last.

        A read error is one DataError naming ``what(row)``: where in the file it broke.
        """
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return offset
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"{self.location} {what(offset)}: {one_line(exc)}") from exc
            yield self._to_chunk(batch, offset)
            offset += batch.num_rows

    def _to_chunk(self, batch: pa.RecordBatch, offset: int) -> Chunk:
        """Return a batch of the required columns (source names) as a chunk at ``offset``."""
        batch = batch.rename_columns(REQUIRED_COLUMNS)
        try:
            return Chunk(
                offset=offset,
                pickup=_as_timestamp(batch.column(PICKUP)),
                # From the raw instants, so a zone's DST change cannot bend a duration.
                duration=_duration(batch.column(PICKUP), batch.column(DROPOFF)),
                pu=_float_column(batch.column("PULocationID"), "PULocationID"),
                do=_float_column(batch.column("DOLocationID"), "DOLocationID"),
                distance=_float_column(batch.column("trip_distance"), "trip_distance"),
            )
        except pa.ArrowException as exc:
            raise DataError(
                f"{self.location} has unreadable values after row {offset:,}: {one_line(exc)}"
            ) from exc

    def close(self) -> None:
        """Delete the downloaded copy of an S3 object."""
        self._file = None
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None


def _as_timestamp(array: pa.Array) -> pa.Array:
    """Return the column as naive ``timestamp[us]`` (the output keeps the course's dtype)."""
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.timestamp("us"))
    tz = getattr(array.type, "tz", None)
    if pa.types.is_timestamp(array.type) and tz:
        # Wall-clock times in the source zone, as pandas would show them.
        array = pc.local_timestamp(array)
    # Nanosecond sources lose their sub-microsecond digits, as the TLC's own files have none.
    return pc.cast(array, pa.timestamp("us"), safe=False)


class SqlReader:
    """Read rides whose pickup falls in the interval from a SQL table, in batches."""

    def __init__(
        self,
        url: str,
        table: str,
        interval: Interval,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        first_row: int = 0,
    ) -> None:
        self.url = sql_url(url)
        self.first_row = first_row  # position of the first row when reading part of a window
        self.table_name = table
        self.interval = interval
        self.chunk_rows = chunk_rows
        self._engine: Any = None
        self._table: Any = None
        self._rows: int | None = None

    def describe(self) -> str:
        """Return the source as ``url#table`` without a password."""
        return f"{safe_url(self.url)}#{self.table_name}"

    def open(self) -> int | None:
        """Connect, reflect the table and check its columns; return the interval's row count."""
        import sqlalchemy as sa

        if self._rows is not None:
            return self._rows
        self._engine = source_engine(self.url)
        try:
            self._table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self._engine)
        except sa.exc.NoSuchTableError:
            raise DataError(
                f"table {self.table_name!r} does not exist in {safe_url(self.url)}"
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(
                f"cannot read {self.describe()}: {one_line(getattr(exc, 'orig', None) or exc)}"
            ) from exc
        fields = {c.name: str(c.type) for c in self._table.columns}
        kinds = {c.name: _sql_kind(c.type) for c in self._table.columns}
        _schema_problems(fields, kinds, self.describe())
        query = sa.select(sa.func.count()).select_from(self._table).where(self._in_interval())
        try:
            with self._engine.connect() as conn:
                self._rows = int(conn.execute(query).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"cannot read {self.describe()}: {one_line(exc)}") from exc
        return self._rows

    def _in_interval(self) -> Any:
        col = self._table.c[PICKUP]
        return (col >= self.interval.start) & (col < self.interval.end)

    def chunks(self) -> Iterator[Chunk]:
        """Yield the interval's rows ordered by pickup (so row positions are stable)."""
        import sqlalchemy as sa

        if self._table is None:
            self.open()
        cols = [self._table.c[name] for name in REQUIRED_COLUMNS]
        # A total order over the columns we read: identical rows are interchangeable, so the
        # same row always lands on the same position and gets the same ride_id.
        query = sa.select(*cols).where(self._in_interval()).order_by(*cols)
        offset = self.first_row
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.chunk_rows)
                for part in result.execute(query).partitions(self.chunk_rows):
                    chunk = _rows_to_chunk(part, offset)
                    offset += len(chunk)
                    yield chunk
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"cannot read {self.describe()}: {one_line(exc)}") from exc
        except (ValueError, TypeError) as exc:  # e.g. SQLite text that is no datetime
            raise DataError(
                f"{self.describe()} has an unreadable value after row {offset:,}: {one_line(exc)}"
            ) from exc

    def close(self) -> None:
        """Close the connection pool."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._table = None
        self._rows = None


def _rows_to_chunk(rows: Sequence[Any], offset: int) -> Chunk:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(REQUIRED_COLUMNS)
    by_name = dict(zip(REQUIRED_COLUMNS, columns, strict=True))
    bad = np.zeros(len(rows), dtype=bool)
    numbers = {}
    for name in NUMERIC_COLUMNS:
        numbers[name], wrong = _floats(by_name[name])
        bad |= wrong
    pickup = _timestamps(by_name[PICKUP])
    dropoff = _timestamps(by_name[DROPOFF])
    return Chunk(
        offset=offset,
        pickup=pickup,
        duration=_duration(pickup, dropoff),
        pu=numbers["PULocationID"],
        do=numbers["DOLocationID"],
        distance=numbers["trip_distance"],
        bad_type=bad,
    )


def _floats(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return floats (NaN for null) and a mask of values that are not numbers at all."""
    try:
        return np.array(values, dtype="float64"), np.zeros(len(values), dtype=bool)
    except (TypeError, ValueError):
        pass
    # SQLite stores whatever it is given: fall back to one value at a time.
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool | str | bytes):
            bad[i] = True
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError, OverflowError):
            bad[i] = True
    return out, bad


def _timestamps(values: Sequence[Any]) -> pa.Array:
    naive = [
        v.replace(tzinfo=None) if isinstance(v, datetime) and v.tzinfo is not None else v
        for v in values
    ]
    return pa.array(naive, type=pa.timestamp("us"))


def _sql_kind(kind: Any) -> str:
    import sqlalchemy as sa

    if isinstance(kind, sa.DateTime | sa.Date):
        return "time"
    if isinstance(kind, sa.Integer | sa.Numeric | sa.Float | sa.Double):
        return "number"
    try:
        python_type = kind.python_type
    except NotImplementedError:  # a dialect type SQLAlchemy cannot map: judge by name
        return "number" if "DOUBLE" in str(kind).upper() else "other"
    return "number" if python_type in (int, float) else "other"


def open_reader(
    location: str, interval: Interval, chunk_rows: int = DEFAULT_CHUNK_ROWS, table: str = "trips"
) -> Reader:
    """Return the reader for ``location``: a database URL, ``s3://`` parquet or a local file."""
    check_location(location, readable=True)
    if is_sql(location):
        return SqlReader(location, table, interval, chunk_rows)
    return ParquetReader(location, chunk_rows)
