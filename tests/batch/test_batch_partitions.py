"""Partition planning: whole row groups of about the asked size, positions that add up."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from deploy_modes.batch.intervals import month_interval
from deploy_modes.batch.partitions import open_partition, plan_partitions
from deploy_modes.core.data import REQUIRED_COLUMNS, write_month

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
    from deploy_modes.batch.staging import Staging

    sink = Staging(target, "predictions", MARCH, run="r1").sink
    assert sink.location == f"{staging}/r1"
    assert sink.part(7) == f"{staging}/r1/part-00007.parquet"


def test_sql_parts_are_labelled_by_interval_run_and_partition() -> None:
    from deploy_modes.batch.staging import Staging

    sink = Staging("sqlite:///p.db", "predictions", MARCH, run="r1").sink
    assert (sink.table, sink.part(7)) == ("predictions_staging", "2021-03#r1#7")
