"""End to end: `deploy batch --runtime compose --engine dask` on a real Docker engine (docker).

A Dask scheduler and two worker containers from the batch image score a month of rides held
in the emulated S3; the output must equal the local engine's on the same month, row by row.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deploy_modes.compose.stack import Stack
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

ROWS = 20_000
ROW_GROUP = 2_500  # 8 row groups ...
PARTITION = 5_000  # ... in 4 partitions: more tasks than the 2 workers
BUCKET = "deploy-modes"


def _ok(result: Any) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def test_compose_dask_batch_equals_the_local_engine_and_down_removes_the_cluster(
    model_dir: Path,
    model_service: ModelService,
    tmp_path: Path,
    stack_teardown: list[str],
    deploy_cli: Callable[..., Any],
) -> None:
    import uuid

    stack_teardown.append("batch")
    # A fresh key: the init step keeps an object that exists (a month of an earlier run).
    key = f"input/{uuid.uuid4().hex[:8]}/green_tripdata_2021-03.parquet"
    env = {
        "DEPLOY_COMPOSE_ROWS": str(ROWS),
        "DEPLOY_COMPOSE_ROW_GROUP_ROWS": str(ROW_GROUP),
        "DEPLOY_BATCH_PARTITION_ROWS": str(PARTITION),
    }
    args = ["batch", "--runtime", "compose", "--month", "2021-03", "--model", str(model_dir)]
    args += ["--input", f"s3://{BUCKET}/{key}"]
    out = _ok(deploy_cli([*args, "--engine", "dask", "--workers", "2"], cwd=tmp_path, env=env))
    assert "on 2 Dask worker containers" in out
    assert "deploy down batch" in out

    stack = Stack("batch")
    running = [s for s in stack.containers() if s.service in ("scheduler", "worker")]
    assert sorted(s.service for s in running) == ["scheduler", "worker", "worker"]
    assert all(s.status == "running" and s.restarts == 0 for s in running)
    published = [p for s in stack.containers() for p in s.ports.split(", ") if p]
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    scheduler = f"tcp://127.0.0.1:{stack.published_port('scheduler', 8786)}"
    assert scheduler in out
    import warnings

    from distributed import Client
    from distributed.versions import VersionMismatchWarning

    with warnings.catch_warnings():
        # The image's Python may differ from ours in its patch number: harmless for asking.
        warnings.simplefilter("ignore", VersionMismatchWarning)
        with Client(scheduler, timeout="30s") as client:
            assert len(client.scheduler_info()["workers"]) == 2

    s3 = aws_client("s3", endpoint=f"http://127.0.0.1:{stack.published_port('emulator', 4566)}")
    source = tmp_path / "green_tripdata_2021-03.parquet"
    source.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert pq.ParquetFile(source).metadata.num_row_groups == ROWS // ROW_GROUP
    prefix = "predictions/taxi_type=green/year=2021/month=03/"
    keys = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    )
    # Published in one step: the object and its marker, no staged part left behind.
    published = f"{prefix}{model_service.version}.parquet"
    # Sorted: a version starting with a digit sorts before "_SUCCESS", one with a letter after.
    assert keys == sorted([f"{prefix}_SUCCESS", published]), keys
    body = s3.get_object(Bucket=BUCKET, Key=published)["Body"].read()
    scored = pq.read_table(io.BytesIO(body)).to_pandas()

    local_out = tmp_path / "local.parquet"
    local = ["batch", "--runtime", "local", "--month", "2021-03", "--input", str(source)]
    _ok(deploy_cli([*local, "--output", str(local_out), "--model", str(model_dir)], cwd=tmp_path))
    expected = pd.read_parquet(local_out)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(scored, expected, check_exact=True)

    _ok(deploy_cli(["down", "batch"], cwd=tmp_path))
    assert Stack("batch").containers() == []
