"""The Dask engine on a real local cluster: the same output as the local engine, row by row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from deploy_modes.batch import run_interval
from deploy_modes.batch.dask_engine import model_loads
from deploy_modes.batch.staging import SUCCESS_MARKER
from deploy_modes.core.data import REQUIRED_COLUMNS, generate_month, month_file, write_month
from deploy_modes.core.storage import aws_client

pytestmark = pytest.mark.integration

ROW_GROUP = 250  # 3,000 rides: 12 row groups, so a run has many more partitions than workers


@pytest.fixture
def grouped_march(tmp_path: Path, march_frame: pd.DataFrame) -> Path:
    """Return March 2021 written in many small row groups."""
    path = tmp_path / "data" / month_file(2021, 3)
    write_month(march_frame, path, row_group_size=ROW_GROUP)
    return path


def _both(source: str, out: Path, model_dir: Path, scheduler: str, **options: object) -> tuple:
    """Run the local and the Dask engine on the same input; return both summaries."""
    common = {"input": source, "model": str(model_dir), "say": lambda _m: None, **options}
    local = run_interval("2021-03", output=str(out / "local.parquet"), **common)
    dask = run_interval(
        "2021-03",
        output=str(out / "dask.parquet"),
        engine="dask",
        scheduler=scheduler,
        partition_rows=ROW_GROUP,
        chunk_rows=100,
        **common,
    )
    return local, dask


def _same_summary(local: dict, dask: dict) -> None:
    for key in ("rows_read", "rows_dropped", "rows_scored", "rows_written", "source"):
        assert local[key] == dask[key], key


def test_parquet_output_equals_the_local_engine_row_by_row(
    grouped_march: Path, tmp_path: Path, model_dir: Path, dask_scheduler: str
) -> None:
    local, dask = _both(str(grouped_march), tmp_path, model_dir, dask_scheduler)
    _same_summary(local, dask)
    assert sum(local["rows_dropped"].values()) > 0  # the drop counts are compared, not zeros
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert pq.read_schema(tmp_path / "local.parquet").equals(
        pq.read_schema(tmp_path / "dask.parquet")
    )
    # Published in one step: no staging folder or temp file is left next to the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask.parquet", "data", "local.parquet"]


def test_each_worker_loads_the_model_once(
    grouped_march: Path, tmp_path: Path, model_dir: Path, dask_scheduler: str
) -> None:
    from distributed import Client

    _both(str(grouped_march), tmp_path, model_dir, dask_scheduler)
    _both(str(grouped_march), tmp_path, model_dir, dask_scheduler)  # 24 tasks, 2 workers
    with Client(dask_scheduler) as client:
        loads = client.run(model_loads)
    per_worker = [
        n for counts in loads.values() for loc, n in counts.items() if str(model_dir) in loc
    ]
    assert per_worker, "no worker loaded the model"
    assert all(n == 1 for n in per_worker), loads


def _load_trips(url: str, frame: pd.DataFrame) -> None:
    engine = sa.create_engine(url)
    frame[REQUIRED_COLUMNS].to_sql("trips", engine, index=False, if_exists="replace")
    engine.dispose()


def _rows(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f"select * from {table} order by ride_id"), conn)
    engine.dispose()
    return frame


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sql_in_sql_out_equals_the_local_engine_row_by_row(
    backend: str,
    march_frame: pd.DataFrame,
    tmp_path: Path,
    model_dir: Path,
    dask_scheduler: str,
    request: pytest.FixtureRequest,
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'rides.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_schema_url")
    )
    _load_trips(url, march_frame)
    common = {"input": url, "output": url, "model": str(model_dir), "say": lambda _m: None}
    local = run_interval("2021-03", output_table="local", **common)
    dask = run_interval(
        "2021-03",
        output_table="dask",
        engine="dask",
        scheduler=dask_scheduler,
        partition_rows=400,  # 3,000 rides: 8 pickup sub-windows of the month
        **common,
    )
    _same_summary(local, dask)
    twice = run_interval(  # a rerun replaces the interval, no duplicates
        "2021-03",
        output_table="dask",
        engine="dask",
        scheduler=dask_scheduler,
        partition_rows=400,
        **common,
    )
    assert twice["rows_written"] == dask["rows_written"]
    pd.testing.assert_frame_equal(_rows(url, "local"), _rows(url, "dask"), check_exact=True)
    engine = sa.create_engine(url)
    tables = sa.inspect(engine).get_table_names()
    engine.dispose()
    # The emptied staging table is dropped after the commit: only the outputs and the input.
    assert sorted(tables) == ["dask", "local", "trips"]


def test_s3_in_s3_out_stages_then_publishes_one_object_and_a_marker(
    grouped_march: Path, tmp_path: Path, model_dir: Path, dask_scheduler: str, moto_server: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import uuid

    from distributed import Client

    url = moto_server.url  # type: ignore[attr-defined]
    bucket = f"dask-{uuid.uuid4().hex[:10]}"
    s3 = aws_client("s3", endpoint=url)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.upload_file(str(grouped_march), bucket, "in/march.parquet")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    with Client(dask_scheduler) as client:  # the workers started before this endpoint was set
        client.run(lambda: __import__("os").environ.__setitem__("AWS_ENDPOINT_URL", url))
    try:
        dask = run_interval(
            "2021-03",
            input=f"s3://{bucket}/in/march.parquet",
            output=f"s3://{bucket}/out/month=03/preds.parquet",
            model=str(model_dir),
            say=lambda _m: None,
            engine="dask",
            scheduler=dask_scheduler,
            partition_rows=ROW_GROUP,
        )
    finally:
        with Client(dask_scheduler) as client:
            client.run(lambda: __import__("os").environ.pop("AWS_ENDPOINT_URL", None))
    local = run_interval(
        "2021-03", input=str(grouped_march), output=str(tmp_path / "local.parquet"),
        model=str(model_dir), say=lambda _m: None,
    )  # fmt: skip
    assert dask["rows_written"] == local["rows_written"] > 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == [f"out/month=03/{SUCCESS_MARKER}", "out/month=03/preds.parquet"]
    body = s3.get_object(Bucket=bucket, Key="out/month=03/preds.parquet")["Body"].read()
    path = tmp_path / "dask.parquet"
    path.write_bytes(body)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(path)
    )
    marker = json.loads(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    assert marker["rows"] == local["rows_written"]


def _corrupt_row_group(path: Path, group: int) -> None:
    """Overwrite the pages of one row group's trip_distance column with garbage."""
    file = pq.ParquetFile(path)
    column = file.schema_arrow.get_field_index("trip_distance")
    meta = file.metadata.row_group(group).column(column)
    start = meta.dictionary_page_offset or meta.data_page_offset
    with open(path, "r+b") as handle:
        handle.seek(start)
        handle.write(b"\xff" * meta.total_compressed_size)


def test_a_corrupt_row_group_in_partition_7_names_file_and_row_group(
    grouped_march: Path, tmp_path: Path, invoke: Callable[..., object], dask_scheduler: str
) -> None:
    _corrupt_row_group(grouped_march, 7)
    out = tmp_path / "out" / "preds.parquet"
    env = {"DEPLOY_BATCH_PARTITION_ROWS": str(ROW_GROUP)}
    args = ["--month", "2021-03", "--input", str(grouped_march), "--output", str(out)]
    result = invoke(*args, "--engine", "dask", "--scheduler", dask_scheduler, env=env)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    text = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert f"{grouped_march} row group 7 is corrupt" in text
    assert "Traceback" not in text
    assert not out.exists()


def test_backfill_runs_months_in_parallel_and_matches_the_local_engine(
    tmp_path: Path, invoke: Callable[..., object], dask_scheduler: str
) -> None:
    data = tmp_path / "data"
    for month in (3, 4):
        frame = generate_month(2021, month, rows=1_200, seed=month)
        write_month(frame, data / month_file(2021, month), row_group_size=300)
    template = str(data / "green_tripdata_{year:04d}-{month:02d}.parquet")
    env = {"DEPLOY_BATCH_PARTITION_ROWS": "300"}
    args = ["--from", "2021-03", "--to", "2021-04", "--input", template, "--json"]
    local = invoke(*args, "--output", str(tmp_path / "local-{year}-{month:02d}.parquet"))
    dask = invoke(
        *args, "--output", str(tmp_path / "dask-{year}-{month:02d}.parquet"),
        "--engine", "dask", "--scheduler", dask_scheduler, env=env,
    )  # fmt: skip
    assert local.exit_code == dask.exit_code == 0, dask.output  # type: ignore[attr-defined]
    for month in ("03", "04"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"local-2021-{month}.parquet"),
            pd.read_parquet(tmp_path / f"dask-2021-{month}.parquet"),
        )
    summaries = [json.loads(line) for line in dask.output.splitlines() if line.startswith("{")]  # type: ignore[attr-defined]
    assert [s["interval"] for s in summaries] == ["2021-03", "2021-04"]


def test_an_unreachable_scheduler_is_one_line(
    march_file: Path, tmp_path: Path, invoke: Callable[..., object]
) -> None:
    from deploy_modes.launch.processes import free_port

    args = [
        "--month",
        "2021-03",
        "--input",
        str(march_file),
        "--output",
        str(tmp_path / "o.parquet"),
    ]
    env = {"DEPLOY_DASK_SCHEDULER": f"tcp://127.0.0.1:{free_port()}"}
    result = invoke(*args, "--engine", "dask", env=env)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in result.output  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


def test_workers_that_cannot_reach_the_input_fail_the_job_with_one_line(
    grouped_march: Path, tmp_path: Path, invoke: Callable[..., object], dask_scheduler: str,
    moto_server: object,
) -> None:  # fmt: skip
    import uuid

    from distributed import Client

    from deploy_modes.launch.processes import free_port

    url = moto_server.url  # type: ignore[attr-defined]
    bucket = f"dask-{uuid.uuid4().hex[:10]}"
    s3 = aws_client("s3", endpoint=url)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.upload_file(str(grouped_march), bucket, "in/march.parquet")
    dead = f"http://127.0.0.1:{free_port()}"  # the workers' S3: nothing listens there
    out = tmp_path / "out" / "p.parquet"
    args = ["--month", "2021-03", "--input", f"s3://{bucket}/in/march.parquet"]
    args += ["--output", str(out), "--engine", "dask", "--scheduler", dask_scheduler]
    with Client(dask_scheduler) as client:
        client.run(lambda: __import__("os").environ.__setitem__("AWS_ENDPOINT_URL", dead))
        try:
            result = invoke(*args, env={"AWS_ENDPOINT_URL": url})
        finally:
            client.run(lambda: __import__("os").environ.pop("AWS_ENDPOINT_URL", None))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    lines = result.output.strip().splitlines()  # type: ignore[attr-defined]
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1, result.output  # type: ignore[attr-defined]
    assert f"could not read s3://{bucket}/in/march.parquet" in " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert not out.exists()


def test_workers_load_a_pickle_only_with_the_commands_trust(
    grouped_march: Path, tmp_path: Path, bare_pickle: Path, dask_scheduler: str
) -> None:
    """The workers grant what the command was given: a trusted pickle scores, none refuses."""
    from deploy_modes.core.artifact import Trust
    from deploy_modes.core.errors import DeployError

    common = {"input": str(grouped_march), "say": lambda _m: None, "engine": "dask"}
    common |= {"scheduler": dask_scheduler, "partition_rows": ROW_GROUP}
    trusted = run_interval(
        "2021-03",
        model=str(bare_pickle),
        output=str(tmp_path / "trusted.parquet"),
        trust=Trust(pickle=True),
        **common,
    )
    local = run_interval(
        "2021-03",
        model=str(bare_pickle),
        input=str(grouped_march),
        output=str(tmp_path / "local.parquet"),
        say=lambda _m: None,
        trust=Trust(pickle=True),
    )
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "trusted.parquet")
    assert trusted["rows_written"] == local["rows_written"] > 0
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(DeployError, match="pickle"):
        run_interval(
            "2021-03",
            model=str(bare_pickle),
            output=str(tmp_path / "refused.parquet"),
            trust=Trust(),
            **common,
        )
    assert not (tmp_path / "refused.parquet").exists()
