"""Kill the real ``deploy batch`` process mid-run: no partial output, no duplicates; rerun heals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from deploy_modes.core.data import generate_month, month_file, write_month

pytestmark = pytest.mark.integration

KILL_ROWS = 400_000
KILL_CHUNK = 2_000  # 200 chunks: the job is surely still running when the first one lands
SQL_ROWS = 60_000  # SQL inserts are slower than parquet writes: fewer rows give as many chunks
SQL_CHUNK = 300


@pytest.fixture(scope="module")
def big_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a 400k-row March 2021 on disk."""
    path = tmp_path_factory.mktemp("big") / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=KILL_ROWS, seed=3), path)
    return path


@pytest.fixture(scope="module")
def small_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a 60k-row March 2021 on disk."""
    path = tmp_path_factory.mktemp("small") / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=SQL_ROWS, seed=3), path)
    return path


def _wait_for(predicate: Callable[[], bool], process: subprocess.Popen[bytes]) -> None:
    """Poll until the job has started writing; fail (not pass) if it ended first."""
    deadline = time.monotonic() + 120
    while not predicate():
        assert process.poll() is None, "the job ended before it could be killed mid-run"
        assert time.monotonic() < deadline, "the job never started writing"
        time.sleep(0.002)


def _start(args: list[str], cwd: Path, chunk: int = KILL_CHUNK) -> subprocess.Popen[bytes]:
    deploy = Path(sys.executable).parent / "deploy"
    return subprocess.Popen(
        [str(deploy), "batch", "--runtime", "local", *args],
        cwd=cwd,
        env={**os.environ, "DEPLOY_BATCH_CHUNK_ROWS": str(chunk)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, "the job ended before it could be killed mid-run"
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(30) == -signal.SIGKILL


def test_killed_parquet_job_leaves_nothing_and_a_rerun_completes(
    big_month: Path, model_dir: Path, tmp_path: Path, run_deploy: Callable[..., Any]
) -> None:
    out_dir = tmp_path / "out"
    target = out_dir / "2021-03.parquet"
    args = ["--month", "2021-03", "--input", str(big_month), "--output", str(target)]
    args += ["--model", str(model_dir)]
    job = _start(args, tmp_path)
    _wait_for(lambda: out_dir.is_dir() and any(out_dir.iterdir()), job)
    _kill(job)
    assert not target.exists(), "a killed job must not leave a (partial) output file"
    visible = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
    assert visible == []

    rerun = run_deploy(["batch", "--runtime", "local", *args, "--json"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr + rerun.stdout
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["rows_read"] == KILL_ROWS
    frame = pd.read_parquet(target)
    assert len(frame) == summary["rows_written"] == summary["rows_scored"]
    assert frame["ride_id"].is_unique
    # The rerun also swept the killed run's hidden temp file.
    assert [p.name for p in out_dir.iterdir()] == ["2021-03.parquet"]


def _count(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:  # for SQLite, opening the file rolls a dead transaction back
        count, distinct = conn.execute(
            sa.text("select count(*), count(distinct ride_id) from predictions")
        ).one()
    engine.dispose()
    return int(count), int(distinct)


def _postgres_writing(url: str) -> Callable[[], bool]:
    """Return a probe: does another session hold a write lock on ``predictions``?"""
    engine = sa.create_engine(url)
    query = sa.text(
        "select count(*) from pg_locks where relation = to_regclass('predictions') "
        "and mode = 'RowExclusiveLock' and granted and pid <> pg_backend_pid()"
    )

    def probe() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(query).scalar_one())

    probe.engine = engine  # type: ignore[attr-defined]
    return probe


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_killed_sql_job_rolls_back_and_a_rerun_has_no_duplicates(
    backend: str,
    small_month: Path,
    model_dir: Path,
    tmp_path: Path,
    run_deploy: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'preds.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_schema_url")
    )
    args = ["--month", "2021-03", "--input", str(small_month), "--output", url]
    args += ["--model", str(model_dir)]
    # A first complete run, so the killed rerun has old rows it must not lose or duplicate.
    first = run_deploy(["batch", "--runtime", "local", *args, "--json"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    written = json.loads(first.stdout.strip().splitlines()[-1])["rows_written"]
    if backend == "sqlite":
        # SQLite's rollback journal appears when the replacing transaction begins.
        started: Callable[[], bool] = (tmp_path / "preds.db-journal").exists
    else:
        started = _postgres_writing(url)
    job = _start(args, tmp_path, SQL_CHUNK)
    try:
        _wait_for(started, job)
        _kill(job)
    finally:
        engine = getattr(started, "engine", None)
        if engine is not None:
            engine.dispose()
    assert _count(url) == (written, written)

    rerun = run_deploy(["batch", "--runtime", "local", *args], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr + rerun.stdout
    assert _count(url) == (written, written)
