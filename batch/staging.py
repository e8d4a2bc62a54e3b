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

With ``parts=True`` (``--output-parts``) the output is a folder of parquet files, one per
partition, that the workers write themselves: nothing is appended on the client. Publishing
renames the staged folder into place (local) or copies the parts under the target prefix and
writes its ``_SUCCESS`` marker last (S3).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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
    open_parquet,
)
from deploy_modes.core.errors import DataError, DeployError, UsageError
from deploy_modes.core.storage import (
    aws_client,
    fsync_folder,
    is_s3,
    list_s3,
    os_cause,
    parse_s3,
    s3_error,
    write_bytes,
)

__all__ = ["PARTS_NEED_FILES", "SUCCESS_MARKER", "PartSink", "Staging"]

SUCCESS_MARKER = "_SUCCESS"
_STAGING_SUFFIX = ".staging"
_PART_SEP = "#"  # SQL staging rows are labelled "<interval>#<partition>"
_PART_SUFFIX = ".arrow"  # an Arrow IPC file, uncompressed
_PARQUET_SUFFIX = ".parquet"  # --output-parts: the published parts themselves
_PARQUET_PART = re.compile(r"part-\d{5,}\.parquet")
_OLD_INFIX = ".old-"  # a replaced parts folder, renamed aside until the new one is in place
_S3_DELETE_BATCH = 1_000  # DeleteObjects takes at most this many keys
PARTS_NEED_FILES = (
    "--output-parts writes a folder of parquet files: give a .parquet path or s3:// output, "
    "not a database URL"
)


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
    parquet: bool = False  # --output-parts: each part is one of the output's parquet files

    def part(self, index: int) -> str:
        """Return the location of part ``index`` (files) or its row label (SQL)."""
        if self.table:
            return f"{self.interval_label}{_PART_SEP}{index}"
        return f"{self.location.rstrip('/')}/{self.name(index)}"

    def name(self, index: int) -> str:
        """Return the file name of part ``index``."""
        return f"part-{index:05d}{_PARQUET_SUFFIX if self.parquet else _PART_SUFFIX}"

    def writer(self, index: int) -> Writer:
        """Return the writer of part ``index``: replacing it whole, or not at all."""
        if self.table:
            writer = SqlWriter(_patient(self.location), self.table)
            return _PartWriter(writer, _PartKey(self.part(index)))
        if self.parquet:
            # The part is what readers will read: the output's own encoding, and fsynced (the
            # file, then its folder) before the task reports done, as a published file is.
            return FileWriter(self.part(index), open_file=open_parquet)
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
        self,
        target: str,
        output_table: str,
        interval: Interval,
        run: str | None = None,
        parts: bool = False,
    ) -> None:
        self.target = target
        self.interval = interval
        self.output_table = output_table
        self.parts = parts
        # Parts live under this run's own name: a task of an earlier, abandoned run that is
        # still finishing on a long-lived cluster can only write where nobody reads.
        self.run = run or uuid.uuid4().hex[:8]
        self._written: dict[int, int] = {}
        self._next = 0  # the first part not yet appended to the output in progress
        self.append_seconds = 0.0  # the client's time appending parts to the output file
        self._session: Session | None = None
        if is_sql(target):
            if parts:
                raise UsageError(PARTS_NEED_FILES)
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
        self.sink = PartSink(f"{self._root}/{self.run}", parquet=parts)

    def prepare(self) -> None:
        """Check the target, then remove every run's parts of this interval.

        A killed run leaves its own parts behind, and for ``parts`` maybe a half-done swap
        of folders, which is undone first.
        """
        if self.parts and is_s3(self.target):
            self._s3_check_prefix()
        elif self.parts:
            _sweep_old_folders(Path(self.target))
            _check_folder(Path(self.target))
        self._clear()

    def _clear(self) -> None:
        """Remove every run's parts of this interval."""
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
        if self.sink.table or self.parts:
            return  # SQL: one INSERT ... SELECT in the commit; parts: already where they go
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
            if self.parts:
                names = self._check_parquet_parts(written)
                if is_s3(self.target):
                    self._s3_publish_parts(names, sum(written))
                else:
                    self._publish_folder(names, sum(written))
                return self.target
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
            self._clear()  # the parts are published or useless: remove them either way

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
                raise self._mismatch(location, held, rows)
            for batch in range(part.num_record_batches):
                yield pa.Table.from_batches([part.get_batch(batch)])

    def _mismatch(self, location: str, held: int, rows: int) -> DeployError:
        return DeployError(
            f"staged part {location} holds {held:,} rows, its task "
            f"reported {rows:,}: refusing to publish {self.interval.label}"
        )

    def _check_parquet_parts(self, written: Sequence[int]) -> list[str]:
        """Check each staged parquet part holds its task's rows; return their names in order.

        Only the footers are read. A partition that wrote no row has no part.
        """
        names = []
        for index, rows in enumerate(written):
            if not rows:
                continue
            location = self.sink.part(index)
            try:
                if is_s3(location):
                    from deploy_modes.batch.partitions import s3_filesystem

                    loc = parse_s3(location)
                    with s3_filesystem().open_input_file(f"{loc.bucket}/{loc.key}") as handle:
                        held, schema = _footer(handle)
                else:
                    held, schema = _footer(location)
            except (OSError, pa.ArrowException) as exc:
                raise DeployError(f"staged part {location} is unreadable: {one_line(exc)}") from exc
            if held != rows or not schema.equals(OUTPUT_SCHEMA):
                raise self._mismatch(location, held, rows)
            names.append(self.sink.name(index))
        return names

    def _marker(self, names: Sequence[str], rows: int) -> bytes:
        """Return the ``_SUCCESS`` marker of a parts folder: which parts are current."""
        body = {"interval": self.interval.label, "rows": rows, "parts": list(names)}
        return json.dumps(body).encode()

    def _publish_folder(self, names: Sequence[str], rows: int) -> None:
        """Swap the staged folder in for the target's: two renames in the target's folder."""
        staged, target = Path(self.sink.location), Path(self.target)
        old = target.parent / f".{target.name}{_OLD_INFIX}{self.run}"
        try:
            for entry in staged.iterdir():  # a killed attempt's temp file: not part of it
                if entry.name not in names:
                    entry.unlink()
            write_bytes(staged / SUCCESS_MARKER, self._marker(names, rows))
            fsync_folder(staged)
            if target.exists():
                target.rename(old)
            # Killed here, the target is missing and the next run's sweep renames the old back.
            try:
                staged.rename(target)
            except OSError:
                if old.exists():
                    old.rename(target)
                raise
            fsync_folder(target.parent)
        except OSError as exc:
            raise DeployError(f"cannot publish {target}: {os_cause(exc)}") from exc
        shutil.rmtree(old, ignore_errors=True)

    def _s3_check_prefix(self) -> None:
        """Refuse a target that is an object, or a prefix holding more than parts."""
        loc = parse_s3(self.target)
        try:
            # The object itself, if any, sorts first of every key it is a prefix of.
            first = aws_client("s3").list_objects_v2(Bucket=loc.bucket, Prefix=loc.key, MaxKeys=1)
        except Exception as exc:
            raise s3_error(exc, self.target) from exc
        if [o["Key"] for o in first.get("Contents", [])] == [loc.key]:
            raise UsageError(
                f"--output-parts writes a folder of parts, but {self.target} is an object: "
                "delete it or choose another --output"
            )
        _refuse_foreign(self.target, list_s3(self.target))

    def _s3_publish_parts(self, names: Sequence[str], rows: int) -> None:
        """Copy the parts under the target prefix; the ``_SUCCESS`` marker goes last.

        The marker is deleted first: while parts are being replaced, the prefix has none, so
        a reader that trusts only marked prefixes never reads a mix of two runs.
        """
        loc = parse_s3(self.target)
        prefix = loc.key.rstrip("/") + "/"
        s3 = aws_client("s3")
        try:
            s3.delete_object(Bucket=loc.bucket, Key=prefix + SUCCESS_MARKER)
            for name in names:
                src = parse_s3(f"{self.sink.location}/{name}")
                # The managed copy: server-side, multipart past 8 MiB, so any part size works.
                s3.copy({"Bucket": src.bucket, "Key": src.key}, loc.bucket, prefix + name)
            # An earlier run with more partitions left parts this one does not overwrite.
            stale = [k for k in list_s3(self.target, s3) if k not in names and k != SUCCESS_MARKER]
            for start in range(0, len(stale), _S3_DELETE_BATCH):
                batch = [{"Key": prefix + k} for k in stale[start : start + _S3_DELETE_BATCH]]
                s3.delete_objects(Bucket=loc.bucket, Delete={"Objects": batch})
            s3.put_object(
                Bucket=loc.bucket, Key=prefix + SUCCESS_MARKER, Body=self._marker(names, rows)
            )
        except DeployError:
            raise
        except Exception as exc:
            raise DeployError(f"cannot publish {self.target}: {one_line(exc)}") from exc

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


def _footer(source: Any) -> tuple[int, pa.Schema]:
    """Return a parquet file's row count and schema from its footer."""
    file = pq.ParquetFile(source)
    return file.metadata.num_rows, file.schema_arrow


def _is_ours(name: str) -> bool:
    """Return whether a parts folder's entry is one a run of ours writes."""
    # Hidden entries are a writer's temp files, which readers skip too.
    return bool(_PARQUET_PART.fullmatch(name)) or name == SUCCESS_MARKER or name.startswith(".")


def _refuse_foreign(target: str, names: Sequence[str]) -> None:
    """Refuse to replace a folder that holds more than an earlier run's parts."""
    foreign = sorted(n for n in names if not _is_ours(n))
    if foreign:
        raise UsageError(
            f"{target} holds files that are not parts of a batch output ({foreign[0]}, ...): "
            "refusing to replace it; choose another --output"
        )


def _check_folder(target: Path) -> None:
    """Refuse a target that is a file, or a folder holding more than parts."""
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"--output-parts writes a folder of parts, but {target} is a file: "
            "remove it or choose another --output"
        )
    if target.is_dir():
        _refuse_foreign(str(target), [entry.name for entry in target.iterdir()])


def _sweep_old_folders(target: Path) -> None:
    """Undo a half-done swap a killed client left (target gone, old aside), drop the rest."""
    if not target.parent.is_dir():
        return
    olds = sorted(
        target.parent.glob(f".{target.name}{_OLD_INFIX}*"), key=lambda p: p.stat().st_mtime
    )
    if olds and not target.exists():
        # Killed between its two renames: the previous output is complete, bring it back.
        olds.pop().rename(target)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
