"""SQL sources and sinks: embedded SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deploy_modes.batch import run_interval
from deploy_modes.batch.intervals import month_interval, parse_run_date, previous_interval
from deploy_modes.batch.writers import OUTPUT_SCHEMA, SqlWriter
from deploy_modes.core.data import REQUIRED_COLUMNS
from deploy_modes.core.errors import DeployError
from deploy_modes.core.scoring import ModelService

Invoke = Callable[..., object]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return an empty database: a SQLite file, or a fresh schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rides.db'}"
        return
    yield request.getfixturevalue("postgres_schema_url")


def _load_trips(url: str, frame: pd.DataFrame, table: str = "trips") -> None:
    engine = sa.create_engine(url)
    frame[[c for c in REQUIRED_COLUMNS if c in frame]].to_sql(
        table, engine, index=False, if_exists="replace"
    )
    engine.dispose()


def _query(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(sql))]
    engine.dispose()
    return rows


def test_sql_in_parquet_out_equals_the_file_run(
    db_url: str, march_file: Path, march_frame: pd.DataFrame, tmp_path: Path,
    model_service: ModelService,
) -> None:  # fmt: skip
    _load_trips(db_url, march_frame)
    quiet = {"model": model_service, "say": lambda _m: None, "chunk_rows": 500}
    from_sql = run_interval("2021-03", input=db_url, output=str(tmp_path / "s.parquet"), **quiet)
    from_file = run_interval(
        "2021-03", input=str(march_file), output=str(tmp_path / "f.parquet"), **quiet
    )
    assert from_sql["rows_read"] == from_file["rows_read"] == len(march_frame)
    assert from_sql["rows_dropped"] == from_file["rows_dropped"]
    a = pd.read_parquet(tmp_path / "s.parquet").sort_values("lpep_pickup_datetime", kind="stable")
    b = pd.read_parquet(tmp_path / "f.parquet").sort_values("lpep_pickup_datetime", kind="stable")
    np.testing.assert_allclose(
        np.sort(a["predicted_duration"]), np.sort(b["predicted_duration"]), atol=1e-9
    )


def test_parquet_in_sql_out_replaces_the_interval_in_one_transaction(
    db_url: str, march_file: Path, model_service: ModelService
) -> None:
    quiet = {"model": model_service, "say": lambda _m: None, "output_table": "preds"}
    first = run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    second = run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    assert first["rows_written"] == second["rows_written"] > 0
    ((count, distinct),) = _query(db_url, "select count(*), count(distinct ride_id) from preds")
    assert count == distinct == first["rows_written"]
    columns = _query(db_url, "select * from preds limit 1")[0]
    assert len(columns) == 9  # the course's eight columns plus batch_interval


def test_a_rerun_replaces_its_own_interval_and_no_other(
    db_url: str, march_file: Path, model_service: ModelService
) -> None:
    # Three intervals in one table; rerunning the middle one must leave the earlier and the
    # later one alone (a delete by `<=` or `>=` on the label would take one of them along).
    quiet = {"model": model_service, "say": lambda _m: None, "output_table": "preds"}
    count = "select batch_interval, count(*) from preds group by batch_interval order by 1"
    for month in ("2021-02", "2021-03", "2021-04"):
        run_interval(month, input=str(march_file), output=db_url, **quiet)
    before = _query(db_url, count)
    assert [label for label, _n in before] == ["2021-02", "2021-03", "2021-04"]
    assert all(n > 0 for _label, n in before)
    run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    assert _query(db_url, count) == before


def test_the_primary_key_refuses_a_ride_written_twice(
    db_url: str, march_file: Path, model_service: ModelService
) -> None:
    # ride_id is the key the course's consumers join on: a second row with the same id must be
    # refused, and the failed interval must leave the rows already there alone.
    quiet = {"model": model_service, "say": lambda _m: None, "output_table": "preds"}
    run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    before = _query(db_url, "select * from preds order by ride_id")
    writer = SqlWriter(db_url, "preds")
    try:
        session = writer.begin(month_interval(2021, 3))
        (ride,) = pq.read_table(march_file).slice(0, 1).to_pylist()
        row = {
            "ride_id": "2021/03_0",
            "lpep_pickup_datetime": ride["lpep_pickup_datetime"],
            "PULocationID": ride["PULocationID"],
            "DOLocationID": ride["DOLocationID"],
            "actual_duration": 10.0,
            "predicted_duration": 11.0,
            "diff": -1.0,
            "model_version": model_service.version,
        }
        with pytest.raises(DeployError, match=r"cannot write to .*#preds: "):
            session.write(pa.Table.from_pylist([row, row], schema=OUTPUT_SCHEMA))
        session.abort()
    finally:
        writer.close()
    assert _query(db_url, "select * from preds order by ride_id") == before


def test_the_interval_column_is_indexed(
    db_url: str, march_file: Path, model_service: ModelService
) -> None:
    # Each run first deletes its interval's rows: without the index that is a full table scan.
    quiet = {"model": model_service, "say": lambda _m: None, "output_table": "preds"}
    run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    engine = sa.create_engine(db_url)
    indexes = sa.inspect(engine).get_indexes("preds")
    engine.dispose()
    assert [index["column_names"] for index in indexes] == [["batch_interval"]]


def test_the_text_columns_keep_their_declared_lengths(
    db_url: str, march_file: Path, model_service: ModelService
) -> None:
    # PostgreSQL enforces varchar lengths: a shorter model_version would refuse long versions.
    quiet = {"model": model_service, "say": lambda _m: None, "output_table": "preds"}
    run_interval("2021-03", input=str(march_file), output=db_url, **quiet)
    engine = sa.create_engine(db_url)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("preds")}
    engine.dispose()
    lengths = {
        name: columns[name].length for name in ("ride_id", "model_version", "batch_interval")
    }
    assert lengths == {"ride_id": 64, "model_version": 64, "batch_interval": 32}


def test_hourly_window_scores_the_previous_hour_sql_to_sql(
    db_url: str, march_frame: pd.DataFrame, invoke: Invoke
) -> None:
    _load_trips(db_url, march_frame, table="rides")
    run_date = "2021-03-10T09:00"
    interval = previous_interval(parse_run_date(run_date), "hour")
    pickup = march_frame["lpep_pickup_datetime"]
    in_window = march_frame[(pickup >= interval.start) & (pickup < interval.end)]
    assert len(in_window) > 0
    args = ["--run-date", run_date, "--window", "1h", "--input", db_url, "--table", "rides"]
    result = invoke(*args, "--output", db_url, "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.output.strip().splitlines()[-1])  # type: ignore[attr-defined]
    assert summary["interval"] == "2021-03-10T08"
    assert summary["rows_read"] == len(in_window)
    ids = [r[0] for r in _query(db_url, "select ride_id from predictions")]
    assert len(ids) == summary["rows_written"] > 0
    assert all(i.startswith("2021/03/10T08_") for i in ids)
    # A rerun gives the same ids and no duplicates.
    again = invoke(*args, "--output", db_url)
    assert again.exit_code == 0, again.output  # type: ignore[attr-defined]
    assert sorted(r[0] for r in _query(db_url, "select ride_id from predictions")) == sorted(ids)


def test_empty_window_writes_nothing(
    db_url: str, march_frame: pd.DataFrame, invoke: Invoke
) -> None:
    _load_trips(db_url, march_frame)
    args = ["--run-date", "2022-01-01", "--window", "1d", "--input", db_url, "--output", db_url]
    result = invoke(*args)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "no rides" in result.output  # type: ignore[attr-defined]
    engine = sa.create_engine(db_url)
    assert not sa.inspect(engine).has_table("predictions")
    engine.dispose()


def test_missing_table_and_columns_are_one_line_errors(
    db_url: str, march_frame: pd.DataFrame, invoke: Invoke, tmp_path: Path
) -> None:
    out = str(tmp_path / "o.parquet")
    partial = march_frame[["lpep_pickup_datetime", "lpep_dropoff_datetime", "PULocationID"]]
    _load_trips(db_url, partial.assign(DOLocationID=1, trip_distance=1.0))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text('alter table trips drop column "DOLocationID"'))
        conn.execute(sa.text("alter table trips drop column trip_distance"))
    engine.dispose()
    missing = invoke("--month", "2021-03", "--input", db_url, "--table", "nope", "--output", out)
    assert missing.exit_code == 1  # type: ignore[attr-defined]
    assert "table 'nope' does not exist" in missing.output  # type: ignore[attr-defined]
    cols = invoke("--month", "2021-03", "--input", db_url, "--output", out)
    assert cols.exit_code == 1  # type: ignore[attr-defined]
    text = " ".join(cols.output.split())  # type: ignore[attr-defined]
    assert "lacks required columns: DOLocationID, trip_distance" in text
    assert "Traceback" not in text


def test_sqlite_values_of_the_wrong_type_are_dropped_and_counted(
    tmp_path: Path, march_frame: pd.DataFrame, model_service: ModelService
) -> None:
    url = f"sqlite:///{tmp_path / 'dirty.db'}"
    _load_trips(url, march_frame.head(50))
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # SQLite stores text in an integer column without complaint
        rowid = conn.execute(sa.text("select min(rowid) from trips")).scalar_one()
        conn.execute(sa.text(f"update trips set PULocationID = 'seven' where rowid = {rowid}"))
        conn.execute(sa.text(f"update trips set trip_distance = NULL where rowid = {rowid + 1}"))
    engine.dispose()
    summary = run_interval(
        "2021-03", input=url, output=str(tmp_path / "o.parquet"), model=model_service,
        say=lambda _m: None,
    )  # fmt: skip
    assert summary["rows_dropped"]["wrong_type"] == 1
    assert summary["rows_dropped"]["missing_distance"] == 1
    assert summary["rows_read"] == 50


def test_missing_sqlite_file_is_an_error_not_a_new_database(invoke: Invoke, tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    result = invoke("--month", "2021-03", "--input", f"sqlite:///{db}")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "SQLite database does not exist" in result.output  # type: ignore[attr-defined]
    assert not db.exists()
