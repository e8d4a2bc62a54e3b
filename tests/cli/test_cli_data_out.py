"""``deploy data --out`` writes what its target names: parquet, a SQL table, or nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import read_trips

runner = CliRunner()
ROWS = 300


def _data(*args: str) -> object:
    return runner.invoke(app, ["data", "--month", "2021-03", "--rows", str(ROWS), *args])


def test_a_sqlite_url_gets_a_trips_table_batch_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    """The README's SQL example: create the database, then score it."""
    monkeypatch.chdir(tmp_path)
    result = _data("--out", "sqlite:///rides.db")
    assert result.exit_code == 0, result.output
    assert f"wrote {ROWS} rides to table trips of sqlite:///rides.db" in result.output
    assert (tmp_path / "rides.db").is_file()
    assert not (tmp_path / "sqlite:").exists()
    engine = sa.create_engine("sqlite:///rides.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from trips")).scalar() == ROWS
    finally:
        engine.dispose()
    scored = runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03"),
            *("--input", "sqlite:///rides.db", "--table", "trips"),
            *("--out", "sqlite:///rides.db", "--model", str(model_dir)),
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert f"read {ROWS}" in scored.output


def test_writing_again_replaces_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rides.db'}"
    assert _data("--out", url, "--table", "march").exit_code == 0
    assert _data("--out", url, "--table", "march").exit_code == 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from march")).scalar() == ROWS
    finally:
        engine.dispose()


@pytest.mark.integration
def test_a_postgresql_url_gets_a_table(postgres_url: str) -> None:
    table = f"trips_{uuid.uuid4().hex[:12]}"  # the test server is shared: a table of our own
    result = _data("--out", postgres_url, "--table", table)
    assert result.exit_code == 0, result.output
    assert f"table {table}" in result.output
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text(f"select count(*) from {table}")).scalar() == ROWS
            columns = {c["name"] for c in sa.inspect(conn).get_columns(table)}
            assert {"lpep_pickup_datetime", "PULocationID", "trip_distance"} <= columns
            conn.execute(sa.text(f"drop table {table}"))
    finally:
        engine.dispose()


def test_a_parquet_path_gets_parquet(tmp_path: Path) -> None:
    target = tmp_path / "rides.parquet"
    assert _data("--out", str(target)).exit_code == 0
    assert len(read_trips(target)) == ROWS


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("rides.csv", "cannot write trips to 'rides.csv'"),
        ("sqlite:/rides.db", "'sqlite:/rides.db' is not a database URL"),
        ("ftp://host/rides.parquet", "cannot write trips to 'ftp://host/rides.parquet'"),
        ("rides", "name the file *.parquet"),
    ],
)
def test_other_targets_are_one_error_line_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, needle: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _data("--out", target)
    assert result.exit_code == 1
    assert needle in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no folder "sqlite:", no rides.csv holding parquet


def test_a_bad_table_name_is_refused_before_generating(tmp_path: Path) -> None:
    result = _data("--out", f"sqlite:///{tmp_path / 'r.db'}", "--table", "trips; drop")
    assert result.exit_code == 1
    assert "--table must be a plain SQL name" in result.output
    assert list(tmp_path.iterdir()) == []
