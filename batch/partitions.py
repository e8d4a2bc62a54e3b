"""Split an interval's source into partitions that workers read themselves.

A :class:`Partition` is a small description (a location, row groups or a pickup sub-window, and
the position of its first row), never the data: a worker opens the source itself. Row positions
carry over, so a partition's rides get the same ``ride_id`` as in a one-process run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.locations import is_sql, one_line
from deploy_modes.batch.readers import (
    Chunk,
    ParquetReader,
    Reader,
    SqlReader,
)
from deploy_modes.core.errors import DataError
from deploy_modes.core.storage import endpoint_url, is_s3, parse_s3

__all__ = [
    "MAX_SQL_PARTITIONS",
    "Partition",
    "RowGroupReader",
    "open_partition",
    "plan_partitions",
    "s3_filesystem",
]

MAX_SQL_PARTITIONS = 64  # one count query per sub-window when planning: keep planning cheap


@dataclass(frozen=True)
class Partition:
    """One task's share of an interval: where to read it and where its rows start."""

    index: int
    interval: Interval
    source: str
    first_row: int
    rows: int
    row_groups: tuple[int, ...] = ()  # parquet: the row groups to read, in order
    table: str = ""  # SQL: the table, and the pickup sub-window [start, end) to read
    start: datetime | None = None
    end: datetime | None = None

    @property
    def label(self) -> str:
        """Return a readable name for messages: interval and partition number."""
        return f"{self.interval.label} partition {self.index}"


class RowGroupReader(ParquetReader):
    """Read some row groups of a parquet file; an ``s3://`` file by byte ranges, not whole."""

    def __init__(
        self, location: str, row_groups: tuple[int, ...], first_row: int, chunk_rows: int
    ) -> None:
        super().__init__(location, chunk_rows)
        self.row_groups = row_groups
        self.first_row = first_row

    def _open_file(self) -> pq.ParquetFile:
        if not is_s3(self.location):
            return super()._open_file()
        loc = parse_s3(self.location)
        try:
            return pq.ParquetFile(s3_filesystem().open_input_file(f"{loc.bucket}/{loc.key}"))
        except FileNotFoundError as exc:
            raise DataError(f"S3 object does not exist: {self.location}") from exc
        except OSError as exc:
            raise DataError(f"could not read {self.location}: {one_line(exc)}") from exc

    def chunks(self) -> Iterator[Chunk]:
        """Yield the partition's rows, naming the row group that fails to read."""
        if self._file is None:
            self.open()
        assert self._file is not None
        offset = self.first_row
        for group in self.row_groups:
            offset = yield from self._chunks_of(
                self._batches([group]), offset, lambda _at, g=group: f"row group {g} is corrupt"
            )


def s3_filesystem() -> Any:
    """Return pyarrow's S3 filesystem with boto3's credentials and our endpoint."""
    import boto3
    from pyarrow import fs

    session = boto3.Session()
    creds = session.get_credentials()
    # boto3 reads AWS_ENDPOINT_URL(_S3) itself; pyarrow does not, so pass the same one on.
    endpoint = endpoint_url("s3")
    if endpoint is None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"region": session.region_name or "us-east-1"}
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        options.update(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
        )
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        options.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
    return fs.S3FileSystem(**options)


def plan_partitions(
    source: str, interval: Interval, table: str, target_rows: int
) -> list[Partition]:
    """Return the interval's partitions of about ``target_rows`` rows, in source order."""
    if is_sql(source):
        return _plan_sql(source, table, interval, target_rows)
    return _plan_parquet(source, interval, target_rows)


def _plan_parquet(source: str, interval: Interval, target_rows: int) -> list[Partition]:
    """Group consecutive row groups into partitions; only the footer is read here."""
    reader = RowGroupReader(source, (), 0, target_rows)
    try:
        reader.open()  # the same schema checks and one-line errors as a one-process run
        assert reader._file is not None
        meta = reader._file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    finally:
        reader.close()
    parts: list[Partition] = []
    groups: list[int] = []
    first = rows = 0
    for group, size in enumerate(sizes):
        if groups and rows + size > target_rows:  # a row group is never split between tasks
            parts.append(Partition(len(parts), interval, source, first, rows, tuple(groups)))
            first += rows
            groups, rows = [], 0
        groups.append(group)
        rows += size
    if groups:
        parts.append(Partition(len(parts), interval, source, first, rows, tuple(groups)))
    return parts


def _plan_sql(url: str, table: str, interval: Interval, target_rows: int) -> list[Partition]:
    """Split the window into equal pickup sub-windows; count the rows before each one."""
    reader = SqlReader(url, table, interval)
    try:
        total = reader.open() or 0
    finally:
        reader.close()
    count = max(1, min(MAX_SQL_PARTITIONS, math.ceil(total / max(1, target_rows))))
    step = (interval.end - interval.start) / count
    bounds = [interval.start + step * i for i in range(count)] + [interval.end]
    parts: list[Partition] = []
    first = 0
    for i in range(count):
        sub = Interval(bounds[i], bounds[i + 1], interval.kind)
        sub_reader = SqlReader(url, table, sub)
        try:
            rows = sub_reader.open() or 0
        finally:
            sub_reader.close()
        # Rows are ordered by pickup first, so a sub-window's rows are consecutive positions.
        parts.append(Partition(i, interval, url, first, rows, (), table, sub.start, sub.end))
        first += rows
    if first != total:
        raise DataError(
            f"{reader.describe()} changed while planning {interval.label}: "
            f"{total:,} rows, but its sub-windows hold {first:,}"
        )
    return parts


def open_partition(part: Partition, chunk_rows: int) -> Reader:
    """Return a reader of exactly the partition's rows, positioned at its first row."""
    if part.table:
        assert part.start is not None and part.end is not None
        sub = Interval(part.start, part.end, part.interval.kind)
        return SqlReader(part.source, part.table, sub, chunk_rows, first_row=part.first_row)
    return RowGroupReader(part.source, part.row_groups, part.first_row, chunk_rows)
