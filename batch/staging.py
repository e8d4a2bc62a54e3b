"""Stage an interval's partitions where readers do not look, then publish them in one step.

Workers write one part per partition: a hidden file next to the target (local), an object
under a hidden staging prefix (S3), or rows of a staging table (SQL). File parts are
uncompressed Arrow IPC files, not parquet: the client memory-maps them and appends their record
batches to the output's one parquet writer, so a row is encoded to parquet once, as by the
local engine, and never decoded on its way. Writing a part is idempotent (a rerun of the task
replaces it), so a task Dask retries after a killed worker still counts once.
:meth:`Staging.publish` checks every part holds the rows its task reported, then makes the
interval visible the way the one-process writer does (one renamed file, one uploaded object
plus a ``_SUCCESS`` marker, one transaction replacing the interval's rows).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.locations import is_sql, one_line
from deploy_modes.batch.writers import (
    INTERVAL_COLUMN,
    OUTPUT_SCHEMA,
    FileWriter,
    ParquetWriter,
    Session,
    SqlWriter,
    Writer,
)
from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.storage import aws_client, is_s3, parse_s3

__all__ = ["SUCCESS_MARKER", "PartSink", "Staging"]

SUCCESS_MARKER = "_SUCCESS"
_STAGING_SUFFIX = ".staging"
_PART_SEP = "#"  # SQL staging rows are labelled "<interval>#<partition>"
_PART_SUFFIX = ".arrow"  # an Arrow IPC file, uncompressed


class _ArrowPart:
    """A staged part being written: an uncompressed Arrow IPC file.

    Measured on 1 M rows (docs/batch.md): writing it costs the worker less than half of a
    snappy parquet part, and reading it back costs the client nothing (a memory map, no
    decoding), where an uncompressed parquet part saved little over snappy.
    """

    def __init__(self, path: str) -> None:
        self._sink = pa.OSFile(path, "wb")
        try:
            self._writer = pa.ipc.new_file(self._sink, OUTPUT_SCHEMA)
        except BaseException:
            self._sink.close()
            raise

    def write_table(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        try:
            self._writer.close()  # the footer; the IPC writer leaves its sink open
        finally:
            self._sink.close()


@dataclass(frozen=True)
class _PartKey:
    """Stands in for an interval where a writer labels rows: one partition of it."""

    label: str


@dataclass(frozen=True)
class PartSink:
    """Where one interval's parts go: a small value sent to the workers with each task."""

    location: str  # staging folder, s3:// staging prefix, or database URL
    table: str = ""  # SQL: the staging table
    interval_label: str = ""

    def part(self, index: int) -> str:
        """Return the location of part ``index`` (files) or its row label (SQL)."""
        if self.table:
            return f"{self.interval_label}{_PART_SEP}{index}"
        return f"{self.location.rstrip('/')}/part-{index:05d}{_PART_SUFFIX}"

    def writer(self, index: int) -> Writer:
        """Return the writer of part ``index``: replacing it whole, or not at all."""
        if self.table:
            writer = SqlWriter(_patient(self.location), self.table)
            return _PartWriter(writer, _PartKey(self.part(index)))
        # Renamed into place (a retried task replaces its part whole) but not fsynced: a part
        # outlives no crash, since the rerun sweeps every part and scores them again.
        return FileWriter(self.part(index), open_file=_ArrowPart, durable=False)


def _patient(url: str) -> str:
    """Return a SQLite URL that waits for the lock: workers write their parts at once."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or "timeout" in parsed.query:
        return url
    # SQLite has one writer at a time; its default 5 s wait is short on a busy machine.
    return parsed.update_query_dict({"timeout": "120"}).render_as_string(hide_password=False)


class _PartWriter:
    """A writer that labels its rows with the partition instead of the interval."""

    def __init__(self, writer: SqlWriter, key: _PartKey) -> None:
        self._writer = writer
        self._key = key

    def describe(self) -> str:
        return self._writer.describe()

    def begin(self, interval: Interval) -> Session:
        # The SQL session deletes then inserts rows of one label in one transaction: a retried
        # task replaces its own part, never another's.
        return self._writer.begin(self._key)  # type: ignore[arg-type]

    def close(self) -> None:
        self._writer.close()


class Staging:
    """One interval's staging area and the commit step that publishes it."""

    def __init__(
        self, target: str, output_table: str, interval: Interval, run: str | None = None
    ) -> None:
        self.target = target
        self.interval = interval
        self.output_table = output_table
        # Parts live under this run's own name: a task of an earlier, abandoned run that is
        # still finishing on a long-lived cluster can only write where nobody reads.
        self.run = run or uuid.uuid4().hex[:8]
        self._written: dict[int, int] = {}
        self._next = 0  # the first part not yet appended to the output in progress
        self.append_seconds = 0.0  # the client's time appending parts to the output file
        self._session: Session | None = None
        if is_sql(target):
            self._root = f"{interval.label}{_PART_SEP}"
            label = f"{self._root}{self.run}"
            self.sink = PartSink(target, f"{output_table}_staging", label)
            return
        if is_s3(target):
            loc = parse_s3(target)
            key = PurePosixPath(loc.key)
            self._root = f"s3://{loc.bucket}/{key.parent / f'.{key.name}{_STAGING_SUFFIX}'}"
        else:
            path = Path(target)
            self._root = str(path.parent / f".{path.name}{_STAGING_SUFFIX}")
        self.sink = PartSink(f"{self._root}/{self.run}")

    def prepare(self) -> None:
        """Remove every run's parts of this interval (a killed run leaves its own behind)."""
        if self.sink.table:
            self._sql_clear_staging()
        elif is_s3(self.target):
            self._s3_delete_prefix()
        else:
            shutil.rmtree(self._root, ignore_errors=True)

    def add(self, index: int, rows: int) -> None:
        """Record that part ``index`` holds ``rows`` rows; append the parts now in order.

        File outputs are assembled while later partitions are still being scored, so the
        commit step at the end has only the last parts left to append.
        """
        self._written[index] = rows
        if self.sink.table:
            return  # SQL: one INSERT ... SELECT in the commit transaction
        started = time.perf_counter()
        while self._next in self._written:
            count = self._written[self._next]
            if count:
                if self._session is None:
                    self._session = ParquetWriter(self.target).begin(self.interval)
                for table in self._read_part(self._next, count):
                    self._session.write(table)
            self._next += 1
        self.append_seconds += time.perf_counter() - started

    def publish(self, parts: int) -> str | None:
        """Publish the interval once all ``parts`` are added; return the output or ``None``."""
        try:
            missing = sorted(set(range(parts)) - set(self._written))
            if missing:
                raise DeployError(f"{self.interval.label}: parts {missing} were never staged")
            written = [self._written[i] for i in range(parts)]
            if sum(written) == 0:
                return None
            if self.sink.table:
                return self._sql_publish(written)
            assert self._session is not None and self._next == parts
            self._session.commit()
            self._session = None
            if is_s3(self.target):
                self._s3_marker(sum(written))
            return self.target
        except BaseException:
            self.abort()
            raise
        finally:
            self.prepare()  # the parts are published or useless: remove them either way

    def drop_staging_table(self) -> bool:
        """Drop the SQL staging table when no run has parts left in it; return whether it did.

        Checked and dropped in one transaction that holds the table's write lock, so a part
        another run is staging at that moment is never dropped with it.
        """
        if not self.sink.table:
            return False
        import sqlalchemy as sa

        staging = self._staging_table()
        try:
            with staging.engine.begin() as conn:
                table = staging.table
                if conn.dialect.name == "postgresql":
                    # Waits for the transactions writing parts; later ones wait for the drop.
                    name = conn.dialect.identifier_preparer.format_table(table)
                    conn.execute(sa.text(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"))
                else:
                    # A write statement takes SQLite's write lock for the transaction.
                    conn.execute(sa.delete(table).where(sa.false()))
                if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                    return False  # another run's parts (a live run, or a killed one's leftovers)
                table.drop(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise DeployError(
                f"published {self.interval.label}, but cannot drop {staging.describe()}: "
                f"{one_line(exc)}"
            ) from exc
        finally:
            staging.close()
        return True

    def abort(self) -> None:
        """Drop the output in progress (the previous output stays); idempotent."""
        if self._session is not None:
            self._session.abort()
            self._session = None

    # Files (local or S3) ------------------------------------------------------------------

    def _read_part(self, index: int, rows: int) -> Iterator[pa.Table]:
        """Yield part ``index`` batch by batch after checking it holds exactly ``rows`` rows.

        Each batch is one chunk the worker wrote, so it becomes one row group of the output,
        as the same chunk does in a local run.
        """
        location = self.sink.part(index)
        try:
            if is_s3(location):
                from deploy_modes.batch.partitions import s3_filesystem

                loc = parse_s3(location)
                handle: Any = s3_filesystem().open_input_file(f"{loc.bucket}/{loc.key}")
            else:
                # Mapped, not read: the batches point into the page cache, nothing is copied.
                handle = pa.memory_map(location)
        except (OSError, pa.ArrowException) as exc:
            raise DeployError(f"staged part {location} is unreadable: {one_line(exc)}") from exc
        with handle:
            try:
                part = pa.ipc.open_file(handle)
                held = part.count_rows()
            except (OSError, pa.ArrowException) as exc:
                raise DeployError(f"staged part {location} is unreadable: {one_line(exc)}") from exc
            if held != rows or not part.schema.equals(OUTPUT_SCHEMA):
                raise DeployError(
                    f"staged part {location} holds {held:,} rows, its task "
                    f"reported {rows:,}: refusing to publish {self.interval.label}"
                )
            for batch in range(part.num_record_batches):
                yield pa.Table.from_batches([part.get_batch(batch)])

    def _s3_delete_prefix(self) -> None:
        loc = parse_s3(self._root + "/")
        s3 = aws_client("s3")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key)
        for page in pages:
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=loc.bucket, Delete={"Objects": keys})

    def _s3_marker(self, rows: int) -> None:
        """Write the ``_SUCCESS`` marker next to the object, naming what it vouches for."""
        loc = parse_s3(self.target)
        folder = loc.key.rsplit("/", 1)[0] + "/" if "/" in loc.key else ""
        body = {"interval": self.interval.label, "object": self.target, "rows": rows}
        aws_client("s3").put_object(
            Bucket=loc.bucket, Key=folder + SUCCESS_MARKER, Body=json.dumps(body).encode()
        )

    # SQL ----------------------------------------------------------------------------------

    def _staging_table(self) -> SqlWriter:
        return SqlWriter(self.target, self.sink.table)

    def _sql_clear_staging(self) -> None:
        import sqlalchemy as sa

        staging = self._staging_table()
        try:
            with staging.engine.begin() as conn:
                column = staging.table.c[INTERVAL_COLUMN]
                conn.execute(sa.delete(staging.table).where(column.like(f"{self._root}%")))
        except sa.exc.SQLAlchemyError as exc:
            raise DeployError(f"cannot clear {staging.describe()}: {one_line(exc)}") from exc
        finally:
            staging.close()

    def _sql_publish(self, written: Sequence[int]) -> str:
        """Replace the interval's rows by the staged ones in one transaction."""
        import sqlalchemy as sa

        final = SqlWriter(self.target, self.output_table)
        staging = self._staging_table()
        src, dst = staging.table, final.table
        columns = [c.name for c in dst.columns if c.name != INTERVAL_COLUMN]
        label = self.interval.label
        staged = src.c[INTERVAL_COLUMN].like(f"{self.sink.interval_label}{_PART_SEP}%")
        try:
            with final.engine.begin() as conn:
                counts = dict(
                    conn.execute(
                        sa.select(src.c[INTERVAL_COLUMN], sa.func.count())
                        .where(staged)
                        .group_by(src.c[INTERVAL_COLUMN])
                    ).all()
                )
                expected = {self.sink.part(i): n for i, n in enumerate(written) if n}
                if counts != expected:
                    raise DataError(
                        f"staged rows of {label} do not match what its tasks reported: "
                        "refusing to publish"
                    )
                conn.execute(sa.delete(dst).where(dst.c[INTERVAL_COLUMN] == label))
                select = sa.select(
                    *[src.c[c] for c in columns], sa.literal(label, sa.String(32))
                ).where(staged)
                conn.execute(dst.insert().from_select([*columns, INTERVAL_COLUMN], select))
                conn.execute(sa.delete(src).where(staged))
        except sa.exc.SQLAlchemyError as exc:
            raise DeployError(f"cannot publish to {final.describe()}: {one_line(exc)}") from exc
        finally:
            final.close()
            staging.close()
        return final.describe()
