"""Fixtures for the batch mode: small months on disk, a CLI runner, real processes."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import generate_month, month_file, write_month

BATCH_ROWS = 3_000


@pytest.fixture(scope="session")
def march_frame() -> pd.DataFrame:
    """Return a small generated March 2021."""
    return generate_month(2021, 3, rows=BATCH_ROWS, seed=11)


@pytest.fixture
def march_file(tmp_path: Path, march_frame: pd.DataFrame) -> Path:
    """Return a fresh copy of March 2021 as TLC parquet in ``tmp_path/data``."""
    path = tmp_path / "data" / month_file(2021, 3)
    write_month(march_frame, path, row_group_size=1_000)
    return path


@pytest.fixture
def invoke(model_dir: Path) -> Callable[..., object]:
    """Return a function running ``deploy batch ARGS`` in-process with the test model."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> object:
        return runner.invoke(
            app,
            ["batch", "--runtime", "local", "--model", str(model_dir), *args],
            env=env,
            catch_exceptions=False,
        )

    return run


def _run_deploy(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    deploy = Path(sys.executable).parent / "deploy"
    return subprocess.run(
        [str(deploy), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run_deploy() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Return a function running the real ``deploy`` console script in a child process."""
    return _run_deploy


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """Return a URL whose ``search_path`` is a fresh schema on the test PostgreSQL."""
    # The shared postgres_url fixture leaves its probe engine's connection to the garbage
    # collector (a ResourceWarning, an error here): collect it now, with that warning ignored.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    schema = f"batch_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"create schema {schema}"))
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop schema {schema} cascade"))
    engine.dispose()


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """Return the address of a real two-worker Dask cluster (processes) shared by the tests."""
    from distributed import LocalCluster

    # Starting worker processes costs seconds on a busy box: one cluster for the session.
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster.scheduler_address
