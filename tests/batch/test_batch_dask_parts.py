"""``--output-parts`` on a real local cluster: a folder of the workers' parquet parts.

The folder holds the local engine's rows, in order, with its schema; a rerun replaces it whole
(local: two renames; S3: parts copied, stale ones deleted, the marker last); the combinations
it cannot serve are refused with exit code 2; a swap a killed client left half done is undone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from deploy_modes.batch import run_interval
from deploy_modes.batch.intervals import resolve_intervals
from deploy_modes.batch.staging import SUCCESS_MARKER, Staging
from deploy_modes.core.data import month_file, write_month
from deploy_modes.core.storage import aws_client

pytestmark = pytest.mark.integration

ROW_GROUP = 250  # 3,000 rides: 12 row groups, so 12 parts at this partition size
FEWER = 1_000  # the rerun's partition size: 3 parts


def _parts(count: int) -> list[str]:
    return [f"part-{i:05d}.parquet" for i in range(count)]


@pytest.fixture
def grouped_march(tmp_path: Path, march_frame: pd.DataFrame) -> Path:
    """Return March 2021 written in many small row groups."""
    path = tmp_path / "data" / month_file(2021, 3)
    write_month(march_frame, path, row_group_size=ROW_GROUP)
    return path


@pytest.fixture
def local_truth(grouped_march: Path, tmp_path: Path, model_dir: Path) -> Path:
    """Return the local engine's one file for the month: what every parts folder must hold."""
    out = tmp_path / "local.parquet"
    run_interval(
        "2021-03", input=str(grouped_march), output=str(out), model=str(model_dir),
        say=lambda _m: None,
    )  # fmt: skip
    return out


def _dask_parts(source: str, target: str, model_dir: Path, scheduler: str, rows: int) -> dict:
    return run_interval(
        "2021-03", input=source, output=target, model=str(model_dir), say=lambda _m: None,
        engine="dask", scheduler=scheduler, partition_rows=rows, chunk_rows=100,
        output_parts=True,
    )  # fmt: skip


def test_the_parts_folder_holds_the_local_engines_rows_in_order(
    grouped_march: Path, local_truth: Path, tmp_path: Path, model_dir: Path, dask_scheduler: str
) -> None:
    target = tmp_path / "out" / "2021-03.parquet"
    summary = _dask_parts(str(grouped_march), str(target), model_dir, dask_scheduler, ROW_GROUP)
    assert summary["output"] == str(target)
    assert sorted(p.name for p in target.iterdir()) == [SUCCESS_MARKER, *_parts(12)]
    # Both ways a reader opens a folder: pandas and pyarrow's dataset.
    pd.testing.assert_frame_equal(
        pd.read_parquet(local_truth), pd.read_parquet(target), check_exact=True
    )
    assert pq.read_table(target).equals(pq.read_table(local_truth))
    assert pq.read_schema(local_truth).equals(pq.read_table(target).schema)
    first = pq.ParquetFile(target / "part-00000.parquet").metadata.row_group(0).column(0)
    assert first.compression == "SNAPPY"
    marker = json.loads((target / SUCCESS_MARKER).read_text())
    assert marker == {
        "interval": "2021-03",
        "rows": summary["rows_written"],
        "parts": _parts(12),
    }
    # Published in one step: no staging folder or old folder left beside it.
    assert [p.name for p in target.parent.iterdir()] == ["2021-03.parquet"]


@pytest.fixture
def s3_target(
    moto_server: object, dask_scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[object, str]]:
    """Return an S3 client and a fresh bucket, the workers pointed at the real moto server."""
    from distributed import Client

    url = moto_server.url  # type: ignore[attr-defined]
    bucket = f"parts-{uuid.uuid4().hex[:10]}"
    s3 = aws_client("s3", endpoint=url)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    with Client(dask_scheduler) as client:  # the workers started before this endpoint was set
        client.run(lambda: __import__("os").environ.__setitem__("AWS_ENDPOINT_URL", url))
    try:
        yield s3, bucket
    finally:
        with Client(dask_scheduler) as client:
            client.run(lambda: __import__("os").environ.pop("AWS_ENDPOINT_URL", None))


def _download(s3: object, bucket: str, prefix: str, into: Path) -> list[str]:
    """Copy every object under ``prefix`` into ``into``; return their names."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
    names = sorted(o["Key"][len(prefix) :] for o in listed.get("Contents", []))
    into.mkdir(parents=True)
    for name in names:
        s3.download_file(bucket, prefix + name, str(into / name))  # type: ignore[attr-defined]
    return names


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_a_rerun_with_fewer_partitions_replaces_the_folder_and_leaves_no_stale_part(
    where: str, grouped_march: Path, local_truth: Path, tmp_path: Path, model_dir: Path,
    dask_scheduler: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    truth = pd.read_parquet(local_truth)
    if where == "disk":
        source, target = str(grouped_march), str(tmp_path / "out" / "2021-03.parquet")

        def published(run: str) -> tuple[list[str], Path]:
            folder = Path(target)
            return sorted(p.name for p in folder.iterdir()), folder
    else:
        s3, bucket = request.getfixturevalue("s3_target")
        s3.upload_file(str(grouped_march), bucket, "in/march.parquet")  # type: ignore[attr-defined]
        source = f"s3://{bucket}/in/march.parquet"
        target = f"s3://{bucket}/out/month=03/2021-03.parquet"

        def published(run: str) -> tuple[list[str], Path]:
            folder = tmp_path / f"got-{run}"
            return _download(s3, bucket, "out/month=03/2021-03.parquet/", folder), folder

    _dask_parts(source, target, model_dir, dask_scheduler, ROW_GROUP)
    names, folder = published("first")
    assert names == [SUCCESS_MARKER, *_parts(12)]
    pd.testing.assert_frame_equal(truth, pd.read_parquet(folder), check_exact=True)

    again = _dask_parts(source, target, model_dir, dask_scheduler, FEWER)
    names, folder = published("again")
    assert names == [SUCCESS_MARKER, *_parts(3)], "a part of the first run is still there"
    pd.testing.assert_frame_equal(truth, pd.read_parquet(folder), check_exact=True)
    marker = json.loads((folder / SUCCESS_MARKER).read_text())
    assert marker == {"interval": "2021-03", "rows": again["rows_written"], "parts": _parts(3)}
    if where == "s3":  # the staging prefix is gone too: only the input and the folder
        keys = s3.list_objects_v2(Bucket=bucket)["Contents"]  # type: ignore[attr-defined]
        assert sorted(k["Key"] for k in keys) == [
            "in/march.parquet",
            *[f"out/month=03/2021-03.parquet/{n}" for n in names],
        ]


def _one_line_usage_error(result: object, needle: str) -> None:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert needle in " ".join(output.split())
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--engine", "local"], "--output-parts needs --engine dask"),
        (["--engine", "dask", "--output", "sqlite:///{tmp}/out.db"], "not a database URL"),
        (["--engine", "dask", "--runtime", "compose"], "runs with --runtime local"),
    ],
    ids=["local-engine", "sql-output", "compose"],
)
def test_output_parts_with_what_it_cannot_serve_is_refused_with_exit_code_2(
    extra: list[str], needle: str, march_file: Path, tmp_path: Path,
    invoke: Callable[..., object],
) -> None:  # fmt: skip
    target = tmp_path / "out" / "2021-03.parquet"
    args = ["--month", "2021-03", "--input", str(march_file), "--output", str(target)]
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    result = invoke(*args, "--output-parts", *extra)
    _one_line_usage_error(result, needle)
    assert not target.parent.exists()


def test_output_parts_onto_an_existing_file_is_refused_and_the_file_kept(
    march_file: Path, tmp_path: Path, invoke: Callable[..., object], dask_scheduler: str
) -> None:
    target = tmp_path / "out" / "2021-03.parquet"
    target.parent.mkdir()
    target.write_bytes(b"an earlier one-file output")
    args = ["--month", "2021-03", "--input", str(march_file), "--output", str(target)]
    result = invoke(*args, "--engine", "dask", "--scheduler", dask_scheduler, "--output-parts")
    _one_line_usage_error(result, f"but {target} is a file")
    assert target.read_bytes() == b"an earlier one-file output"
    assert [p.name for p in target.parent.iterdir()] == ["2021-03.parquet"]


def test_the_environment_turns_output_parts_on(
    march_file: Path, tmp_path: Path, invoke: Callable[..., object]
) -> None:
    target = tmp_path / "out" / "2021-03.parquet"
    args = ["--month", "2021-03", "--input", str(march_file), "--output", str(target)]
    result = invoke(*args, env={"DEPLOY_BATCH_OUTPUT_PARTS": "1"})
    _one_line_usage_error(result, "--output-parts needs --engine dask")


def _folder(path: Path, parts: int) -> dict[str, bytes]:
    """Write a small parts folder by hand; return its files' bytes."""
    path.mkdir(parents=True)
    for name in _parts(parts):
        (path / name).write_bytes(f"rows of {name}".encode())
    (path / SUCCESS_MARKER).write_text(json.dumps({"parts": _parts(parts)}))
    return {p.name: p.read_bytes() for p in path.iterdir()}


def test_a_half_done_swap_is_restored_and_stale_old_folders_removed(tmp_path: Path) -> None:
    interval = resolve_intervals(month="2021-03")[0]
    target = tmp_path / "out" / "2021-03.parquet"
    previous = _folder(tmp_path / "out" / ".2021-03.parquet.old-a1b2c3d4", 4)
    # The killed client's complete staged folder, never renamed into place.
    _folder(tmp_path / "out" / ".2021-03.parquet.staging" / "a1b2c3d4", 2)

    Staging(str(target), "predictions", interval, parts=True).prepare()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == previous
    assert [p.name for p in target.parent.iterdir()] == ["2021-03.parquet"]

    # A client killed while removing the old folder leaves it beside the new one: dropped.
    _folder(tmp_path / "out" / ".2021-03.parquet.old-e5f6a7b8", 9)
    Staging(str(target), "predictions", interval, parts=True).prepare()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == previous
    assert [p.name for p in target.parent.iterdir()] == ["2021-03.parquet"]


def test_a_folder_holding_more_than_parts_is_refused_and_kept(
    march_file: Path, tmp_path: Path, invoke: Callable[..., object], dask_scheduler: str
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("not ours")
    args = ["--month", "2021-03", "--input", str(march_file), "--output", str(target)]
    result = invoke(*args, "--engine", "dask", "--scheduler", dask_scheduler, "--output-parts")
    _one_line_usage_error(result, "holds files that are not parts of a batch output (notes.txt")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_output_parts_onto_an_existing_s3_object_is_refused_and_the_object_kept(
    march_file: Path, model_dir: Path, dask_scheduler: str, s3_target: tuple[object, str]
) -> None:
    from deploy_modes.core.errors import UsageError

    s3, bucket = s3_target
    s3.put_object(Bucket=bucket, Key="out/2021-03.parquet", Body=b"one file")  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match=f"s3://{bucket}/out/2021-03.parquet is an object"):
        _dask_parts(
            str(march_file), f"s3://{bucket}/out/2021-03.parquet", model_dir, dask_scheduler, 500
        )
    body = s3.get_object(Bucket=bucket, Key="out/2021-03.parquet")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"one file"
    keys = s3.list_objects_v2(Bucket=bucket)["Contents"]  # type: ignore[attr-defined]
    assert [k["Key"] for k in keys] == ["out/2021-03.parquet"]
