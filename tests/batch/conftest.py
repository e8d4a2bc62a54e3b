"""Fixtures for the batch mode: small months on disk, a CLI runner, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
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
