"""SIGKILL a Dask worker, then the client, mid-run: the output is exactly-once or the previous."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deploy_modes.batch import run_interval
from deploy_modes.core.data import generate_month, month_file, write_month

pytestmark = pytest.mark.integration

ROWS = 200_000
ROW_GROUP = 5_000  # 40 partitions
CHUNK = 500  # small chunks keep each task busy long enough to be killed inside one


@pytest.fixture(scope="module")
def long_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a 200k-ride March 2021 in 40 row groups."""
    path = tmp_path_factory.mktemp("long") / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=ROWS, seed=5), path, row_group_size=ROW_GROUP)
    return path


@pytest.fixture(scope="module")
def local_truth(
    long_month: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    """Return the local engine's output for the month: what every Dask run must equal."""
    out = tmp_path_factory.mktemp("truth") / "local.parquet"
    run_interval(
        "2021-03", input=str(long_month), output=str(out), model=str(model_dir), say=lambda _m: None
    )
    return pd.read_parquet(out)


def _staged(target: Path) -> list[Path]:
    """Return the staged parts: Arrow files (one-file output) or parquet (--output-parts)."""
    staging = target.parent / f".{target.name}.staging"
    return sorted(staging.glob("*/part-*")) if staging.is_dir() else []


def _previous_output(target: Path, layout: str, truth: pd.DataFrame) -> dict[str, bytes]:
    """Write an earlier run's output by hand; return its files' bytes, by name.

    The earlier parts folder has a part (``part-00050``) the 40-partition rerun does not
    write: a rerun that leaves it holds extra rows.
    """
    target.parent.mkdir(parents=True)
    rows = pa.Table.from_pandas(truth.head(200), preserve_index=False)
    if layout == "file":
        pq.write_table(rows, target)
        return {target.name: target.read_bytes()}
    target.mkdir()
    pq.write_table(rows.slice(0, 100), target / "part-00000.parquet")
    pq.write_table(rows.slice(100), target / "part-00050.parquet")
    (target / "_SUCCESS").write_text(json.dumps({"interval": "2021-03", "rows": 200}))
    return _files(target)


def _files(target: Path) -> dict[str, bytes]:
    if target.is_file():
        return {target.name: target.read_bytes()}
    return {p.name: p.read_bytes() for p in sorted(target.iterdir())}


def _until(predicate: Any, what: str, timeout: float = 180, pause: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(pause)


def test_a_worker_killed_mid_task_is_retried_and_the_output_is_exactly_once(
    long_month: Path, model_dir: Path, tmp_path: Path, dask_scheduler: str,
    local_truth: pd.DataFrame,
) -> None:  # fmt: skip
    from distributed import Client

    target = tmp_path / "dask.parquet"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["summary"] = run_interval(
                "2021-03", input=str(long_month), output=str(target), model=str(model_dir),
                say=lambda _m: None, engine="dask", scheduler=dask_scheduler,
                partition_rows=ROW_GROUP, chunk_rows=CHUNK,
            )  # fmt: skip
        except BaseException as exc:
            outcome["error"] = exc

    job = threading.Thread(target=run)
    job.start()
    with Client(dask_scheduler) as client:
        _until(lambda: len(_staged(target)) >= 2 or not job.is_alive(), "parts are staged")
        assert job.is_alive(), f"the run ended before a worker could be killed: {outcome}"
        busy: list[str] = []

        def a_worker_is_busy() -> bool:
            busy[:] = [w for w, keys in client.processing().items() if keys]
            return bool(busy) or not job.is_alive()

        _until(a_worker_is_busy, "a worker is running a task")
        assert job.is_alive(), "the run ended before a worker could be killed"
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        job.join(300)
        assert not job.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        client.wait_for_workers(2, timeout=120)  # the nanny restarts it for the next tests
    summary = outcome["summary"]
    assert summary["rows_read"] == ROWS
    frame = pd.read_parquet(target)
    assert frame["ride_id"].is_unique
    pd.testing.assert_frame_equal(frame, local_truth, check_exact=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.parquet"]


@pytest.mark.parametrize("layout", ["file", "parts"])
def test_a_killed_client_leaves_the_previous_output_and_a_rerun_replaces_it(
    layout: str, long_month: Path, model_dir: Path, tmp_path: Path, dask_scheduler: str,
    local_truth: pd.DataFrame,
) -> None:  # fmt: skip
    target = tmp_path / "out" / "2021-03.parquet"
    previous = _previous_output(target, layout, local_truth)
    args = ["--month", "2021-03", "--input", str(long_month), "--output", str(target)]
    args += ["--model", str(model_dir), "--json"]
    args += ["--output-parts"] if layout == "parts" else []
    env = {
        **os.environ,
        "DEPLOY_BATCH_PARTITION_ROWS": str(ROW_GROUP),
        "DEPLOY_BATCH_CHUNK_ROWS": str(CHUNK),
    }
    deploy = str(Path(sys.executable).parent / "deploy")
    client = subprocess.Popen(
        [deploy, "batch", "--runtime", "local", *args, "--engine", "dask", "--workers", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _until(lambda: len(_staged(target)) >= 1 or client.poll() is not None, "parts are staged")
        assert client.poll() is None, "the run ended before the client could be killed"
        family = psutil.Process(client.pid).children(recursive=True)
        os.kill(client.pid, signal.SIGKILL)
        assert client.wait(30) == -signal.SIGKILL
    finally:
        if client.poll() is None:
            client.kill()
    # The killed client's own cluster goes away with it: its workers notice and exit.
    _, alive = psutil.wait_procs(family, timeout=120)
    for orphan in alive:
        orphan.kill()
    assert not alive, f"workers outlived their killed client: {[p.pid for p in alive]}"
    assert _files(target) == previous, "a killed run must leave the previous output as it was"
    assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] == [
        "2021-03.parquet"
    ]

    again = [deploy, "batch", "--runtime", "local", *args, "--engine", "dask"]
    rerun = subprocess.run(
        [*again, "--scheduler", dask_scheduler],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["rows_read"] == ROWS
    pd.testing.assert_frame_equal(pd.read_parquet(target), local_truth, check_exact=True)
    # The rerun swept the killed run's staged parts (and the folder it replaced).
    assert [p.name for p in target.parent.iterdir()] == ["2021-03.parquet"]
    if layout == "parts":
        names = sorted(p.name for p in target.iterdir())
        assert names == ["_SUCCESS", *[f"part-{i:05d}.parquet" for i in range(ROWS // ROW_GROUP)]]


SQL_ROWS = 40_000  # SQL inserts are slower than parquet: a smaller month in 20 partitions
SQL_ROW_GROUP = 2_000


@pytest.fixture(scope="module")
def sql_month(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> tuple[Path, pd.DataFrame]:
    """Return a 40k-ride March 2021 in 20 row groups and the local engine's output for it."""
    folder = tmp_path_factory.mktemp("sql-month")
    path = folder / month_file(2021, 3)
    write_month(generate_month(2021, 3, rows=SQL_ROWS, seed=7), path, row_group_size=SQL_ROW_GROUP)
    out = folder / "local.parquet"
    run_interval(
        "2021-03", input=str(path), output=str(out), model=str(model_dir), say=lambda _m: None
    )
    return path, pd.read_parquet(out)


def _count(url: str, table: str) -> int | None:
    """Return the rows of ``table``, or None while it does not exist (or is locked)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_clients_sql_staging_table_is_swept_by_the_rerun(
    backend: str, sql_month: tuple[Path, pd.DataFrame], model_dir: Path, tmp_path: Path,
    dask_scheduler: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    month, local_truth = sql_month
    url = (
        f"sqlite:///{tmp_path / 'out.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_schema_url")
    )
    args = ["--month", "2021-03", "--input", str(month), "--output", url]
    args += ["--model", str(model_dir), "--json", "--engine", "dask"]
    env = {
        **os.environ,
        "DEPLOY_BATCH_PARTITION_ROWS": str(SQL_ROW_GROUP),
        "DEPLOY_BATCH_CHUNK_ROWS": str(CHUNK),
    }
    deploy = [str(Path(sys.executable).parent / "deploy"), "batch", "--runtime", "local"]
    client = subprocess.Popen(
        [*deploy, *args, "--workers", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _until(
            lambda: (_count(url, "predictions_staging") or 0) > 0 or client.poll() is not None,
            "parts are staged",
            timeout=600,
            pause=0.2,  # a reader polling SQLite without pause would starve its writers
        )
        assert client.poll() is None, "the run ended before the client could be killed"
        family = psutil.Process(client.pid).children(recursive=True)
        os.kill(client.pid, signal.SIGKILL)
        assert client.wait(30) == -signal.SIGKILL
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    _, alive = psutil.wait_procs(family, timeout=120)
    for orphan in alive:
        orphan.kill()
    assert not alive, f"workers outlived their killed client: {[p.pid for p in alive]}"
    # The killed run left its staged parts, and published nothing.
    assert (_count(url, "predictions_staging") or 0) > 0
    assert not _count(url, "predictions")

    rerun = subprocess.run(
        [*deploy, *args, "--scheduler", dask_scheduler],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["rows_written"] == len(local_truth)
    # The rerun replaced the killed run's parts, published, and dropped the emptied table.
    assert _tables(url) == ["predictions"]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        written = pd.read_sql(
            sa.text("select ride_id, predicted_duration from predictions"), conn
        ).sort_values("ride_id", ignore_index=True)  # sorted here: a database collates its own way
    engine.dispose()
    truth = local_truth.sort_values("ride_id", ignore_index=True)
    assert written["ride_id"].tolist() == truth["ride_id"].tolist()
    assert written["predicted_duration"].tolist() == truth["predicted_duration"].tolist()
