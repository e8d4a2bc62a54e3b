"""Partition planning and staging: whole row groups near the asked size, parts that publish."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deploy_modes.batch.intervals import month_interval
from deploy_modes.batch.partitions import open_partition, plan_partitions
from deploy_modes.batch.staging import Staging
from deploy_modes.core.data import REQUIRED_COLUMNS, write_month
from deploy_modes.core.errors import DeployError

MARCH = month_interval(2021, 3)


@pytest.mark.parametrize(
    ("target", "groups"), [(1_000, [1, 1, 1]), (2_000, [2, 1]), (999, [1, 1, 1]), (10**9, [3])]
)
def test_parquet_partitions_are_whole_row_groups_near_the_target(
    tmp_path: Path, march_frame: pd.DataFrame, target: int, groups: list[int]
) -> None:
    path = tmp_path / "m.parquet"
    write_month(march_frame, path, row_group_size=1_000)  # 3,000 rides: 3 row groups
    parts = plan_partitions(str(path), MARCH, "trips", target)
    assert [len(p.row_groups) for p in parts] == groups
    assert [p.index for p in parts] == list(range(len(parts)))
    assert [p.first_row for p in parts] == [
        sum(q.rows for q in parts[:i]) for i in range(len(parts))
    ]
    assert sum(p.rows for p in parts) == len(march_frame)


def test_sql_partitions_read_consecutive_positions_of_the_window(
    tmp_path: Path, march_frame: pd.DataFrame
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    engine = sa.create_engine(url)
    march_frame[REQUIRED_COLUMNS].to_sql("trips", engine, index=False)
    engine.dispose()
    parts = plan_partitions(url, MARCH, "trips", 500)
    assert len(parts) == 6
    for part in parts:
        reader = open_partition(part, 200)
        try:
            reader.open()
            chunks = list(reader.chunks())
        finally:
            reader.close()
        assert sum(len(c) for c in chunks) == part.rows
        assert not chunks or chunks[0].offset == part.first_row
    assert sum(p.rows for p in parts) == len(march_frame)


@pytest.mark.parametrize(
    ("target", "staging"),
    [
        ("out.parquet", ".out.parquet.staging"),
        ("/srv/out/2021-03.parquet", "/srv/out/.2021-03.parquet.staging"),
        ("s3://b/out/m=03/v1.parquet", "s3://b/out/m=03/.v1.parquet.staging"),
    ],
)
def test_parts_are_staged_hidden_next_to_the_target(target: str, staging: str) -> None:
    sink = Staging(target, "predictions", MARCH, run="r1").sink
    assert sink.location == f"{staging}/r1"
    assert sink.part(7) == f"{staging}/r1/part-00007.arrow"


def test_sql_parts_are_labelled_by_interval_run_and_partition() -> None:
    sink = Staging("sqlite:///p.db", "predictions", MARCH, run="r1").sink
    assert (sink.table, sink.part(7)) == ("predictions_staging", "2021-03#r1#7")


def _scored(rows: int, first: int = 0) -> pa.Table:
    """Return ``rows`` made-up scored rides in the output schema."""
    from deploy_modes.batch.writers import OUTPUT_SCHEMA

    ids = range(first, first + rows)
    return pa.table(
        {
            "ride_id": [f"2021/03_{i}" for i in ids],
            "lpep_pickup_datetime": pa.array([i * 1_000_000 for i in ids], pa.timestamp("us")),
            "PULocationID": [1 + i % 265 for i in ids],
            "DOLocationID": [1 + i % 7 for i in ids],
            "actual_duration": [10.0 + i for i in ids],
            "predicted_duration": [9.5 + i for i in ids],
            "diff": [0.5] * rows,
            "model_version": ["v1"] * rows,
        },
        schema=OUTPUT_SCHEMA,
    )


def _stage(staging: Staging, index: int, *chunks: pa.Table) -> None:
    """Write part ``index`` the way a worker does: one write per scored chunk."""
    session = staging.sink.writer(index).begin(MARCH)
    for chunk in chunks:
        session.write(chunk)
    session.commit()


def test_parts_are_uncompressed_arrow_and_the_output_is_the_local_engines_parquet(
    tmp_path: Path,
) -> None:
    from deploy_modes.batch.writers import ParquetWriter

    local = tmp_path / "local.parquet"
    session = ParquetWriter(str(local)).begin(MARCH)
    chunks = [_scored(300), _scored(200, 300), _scored(250, 500)]
    for chunk in chunks:
        session.write(chunk)
    session.commit()
    staging = Staging(str(tmp_path / "dask.parquet"), "predictions", MARCH, run="r1")
    staging.prepare()
    _stage(staging, 0, *chunks[:2])
    _stage(staging, 1, chunks[2])
    part = pa.ipc.open_file(pa.memory_map(staging.sink.part(0)))
    assert part.num_record_batches == 2  # one batch per chunk: no re-batching on the way
    assert part.stats.num_dictionary_batches == 0
    staging.add(1, 250)  # out of order: waits for part 0
    staging.add(0, 500)
    assert staging.publish(2) == str(tmp_path / "dask.parquet")
    ours, theirs = pq.ParquetFile(tmp_path / "dask.parquet"), pq.ParquetFile(local)
    assert ours.read().equals(theirs.read())
    assert ours.schema_arrow.equals(theirs.schema_arrow)
    # Same encoding as the local engine's file, row group by row group and column by column.
    assert _encoding(ours) == _encoding(theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.parquet", "local.parquet"]


def _encoding(file: pq.ParquetFile) -> list[tuple[int, str, str, tuple[str, ...]]]:
    meta = file.metadata
    return [
        (group.num_rows, col.path_in_schema, col.compression, col.encodings)
        for group in (meta.row_group(g) for g in range(meta.num_row_groups))
        for col in (group.column(c) for c in range(group.num_columns))
    ]


def test_a_part_short_of_its_tasks_count_is_never_published(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous output")
    staging = Staging(str(target), "predictions", MARCH, run="r1")
    staging.prepare()
    _stage(staging, 0, _scored(100))
    with pytest.raises(DeployError, match="holds 100 rows, its task reported 101"):
        staging.add(0, 101)
    staging.abort()
    assert target.read_bytes() == b"previous output"
