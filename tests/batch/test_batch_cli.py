"""``deploy batch`` in-process: defaults, summaries, and one clear line for every bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deploy_modes.core.data import month_file

Invoke = Callable[..., object]


def _assert_clean_failure(result: object, *needles: str) -> str:
    """Exit code 1, one `error:` line naming the problem, no traceback."""
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in output.replace("\n", " "), output
    return output


def test_help_has_an_example(invoke: Invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert "Example: deploy batch" in result.output  # type: ignore[attr-defined]


def test_month_writes_the_course_layout_and_prints_a_summary(
    invoke: Invoke, march_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("--month", "2021-03", "--input", str(march_file))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    outputs = list((tmp_path / "output").rglob("*.parquet"))
    assert len(outputs) == 1
    assert outputs[0].parent.relative_to(tmp_path).as_posix() == (
        "output/taxi_type=green/year=2021/month=03"
    )
    text = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "2021-03: read 3,000" in text
    assert "duration_out_of_range" in text
    assert "scored" in text


def test_run_date_and_env_vars_bind_options(
    invoke: Invoke, march_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p" / "{year:04d}-{month:02d}.parquet"
    result = invoke(
        "--run-date",
        "2021-04-01",
        "--json",
        env={
            "DEPLOY_BATCH_INPUT": str(
                march_file.parent / "green_tripdata_{year:04d}-{month:02d}.parquet"
            ),
            "DEPLOY_BATCH_OUTPUT": str(out),
        },
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.output.strip().splitlines()[-1])  # type: ignore[attr-defined]
    assert summary["interval"] == "2021-03"
    assert summary["output"] == str(tmp_path / "p" / "2021-03.parquet")
    assert len(pd.read_parquet(summary["output"])) == summary["rows_written"]


def test_backfill_scores_month_by_month(invoke: Invoke, data_dir: Path, tmp_path: Path) -> None:
    template = str(data_dir / "green_tripdata_{year:04d}-{month:02d}.parquet")
    out = str(tmp_path / "o" / "{year:04d}" / "{month:02d}.parquet")
    result = invoke("--from", "2021-01", "--to", "2021-02", "--input", template, "--output", out)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "o" / "2021").iterdir()) == [
        "01.parquet",
        "02.parquet",
    ]


def test_fresh_machine_generates_the_default_month(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOY_DEMO_ROWS", "2000")
    monkeypatch.delenv("DEPLOY_BATCH_INPUT", raising=False)
    result = invoke("--month", "2021-03")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    text = " ".join(result.output.split())  # type: ignore[attr-defined]
    assert "no data for 2021-03" in text and "generating 2,000 demo rides" in text
    assert (tmp_path / "data" / month_file(2021, 3)).is_file()
    assert list((tmp_path / "output").rglob("*.parquet"))


def test_empty_interval_writes_nothing_and_exits_0(invoke: Invoke, tmp_path: Path) -> None:
    source = tmp_path / "empty.parquet"
    pd.DataFrame(
        {
            "lpep_pickup_datetime": pd.Series([], dtype="datetime64[us]"),
            "lpep_dropoff_datetime": pd.Series([], dtype="datetime64[us]"),
            "PULocationID": pd.Series([], dtype="int64"),
            "DOLocationID": pd.Series([], dtype="int64"),
            "trip_distance": pd.Series([], dtype="float64"),
        }
    ).to_parquet(source)
    out = tmp_path / "out.parquet"
    result = invoke("--month", "2021-03", "--input", str(source), "--output", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "no rides" in result.output  # type: ignore[attr-defined]
    assert not out.exists()


def _raw(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _write(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize(
    ("make_input", "needles"),
    [
        (lambda t: t / "nope.parquet", ["does not exist", "nope.parquet"]),
        (lambda t: t, ["directory"]),
        (
            lambda t: _raw(t, "junk.parquet", b"not parquet at all" * 10),
            ["not a readable parquet file"],
        ),
        (lambda t: _raw(t, "empty.parquet", b""), ["not a readable parquet file"]),
        (
            lambda t: _write(t, "cols.parquet", pd.DataFrame({"PULocationID": [1]})),
            [
                "lacks required columns",
                "lpep_pickup_datetime, lpep_dropoff_datetime, DOLocationID, trip_distance",
            ],
        ),
        (
            lambda t: _write(
                t,
                "types.parquet",
                pd.DataFrame(
                    {
                        "lpep_pickup_datetime": ["yesterday"],
                        "lpep_dropoff_datetime": pd.to_datetime(["2021-03-01"]),
                        "PULocationID": ["seven"],
                        "DOLocationID": [3],
                        "trip_distance": [1.0],
                    }
                ),
            ),
            ["wrong column types", "lpep_pickup_datetime is", "PULocationID is"],
        ),
    ],
    ids=["missing", "directory", "garbage", "zero-bytes", "missing-columns", "wrong-dtypes"],
)
def test_bad_input_files_are_one_line_errors(
    invoke: Invoke, tmp_path: Path, make_input: Callable[[Path], Path], needles: list[str]
) -> None:
    source = make_input(tmp_path)
    out = tmp_path / "out.parquet"
    result = invoke("--month", "2021-03", "--input", str(source), "--output", str(out))
    _assert_clean_failure(result, *needles)
    assert not out.exists()


def test_truncated_parquet_is_a_clean_error_and_writes_nothing(
    invoke: Invoke, march_file: Path, tmp_path: Path
) -> None:
    data = bytearray(march_file.read_bytes())
    broken = tmp_path / "broken.parquet"
    # Keep the footer (so the file opens) but scribble over a later row group's zone column.
    column = pq.ParquetFile(march_file).metadata.row_group(2).column(5)
    assert column.path_in_schema == "PULocationID"
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    broken.write_bytes(bytes(data))
    out = tmp_path / "o" / "out.parquet"
    result = invoke("--month", "2021-03", "--input", str(broken), "--output", str(out))
    _assert_clean_failure(result, str(broken))
    assert not out.exists()
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--month", "2021-3"], ["--month must look like YYYY-MM"]),
        (["--month", "2021-03", "--input", "ftp://host/x.parquet"], ["unsupported location"]),
        (["--month", "2021-03", "--output", "out/{nope}.parquet"], ["unknown field {nope}"]),
        (["--month", "2021-03", "--output", "out/{year:Z}.parquet"], ["bad template"]),
        (["--month", "2021-03", "--output", "out/preds.csv"], [".parquet file or a database URL"]),
        (["--month", "2021-03", "--input", ""], ["empty location"]),
        (["--month", "2021-03", "--input", "s3://"], ["S3"]),
        (["--from", "2021-01", "--to", "2021-02", "--output", "o.parquet"], ["lacks {year}"]),
        (["--run-date", "2021-04-01", "--window", "1h"], ["needs a database input"]),
        (["--month", "2021-03", "--chunk-rows", "0"], ["chunk rows must be at least 1"]),
        (["--month", "2021-03", "--taxi-type", "../../etc"], ["--taxi-type must be a word"]),
        (["--month", "2021-03", "--model", "/no/such/model"], ["model"]),
    ],
)
def test_bad_options_are_one_line_errors(
    invoke: Invoke, args: list[str], needles: list[str], tmp_path: Path
) -> None:
    result = invoke(*args)
    _assert_clean_failure(result, *needles)


def test_wrong_typed_option_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("--month", "2021-03", "--chunk-rows", "many")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


def test_oversized_values_are_dropped_not_fatal(invoke: Invoke, tmp_path: Path) -> None:
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array([0, 0, 0], pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array([600_000_000] * 3, pa.timestamp("us")),
            "PULocationID": pa.array([2**62, 5, 5], pa.int64()),
            "DOLocationID": pa.array([5, -(2**62), 5], pa.int64()),
            "trip_distance": pa.array([1.0, 1.0, 1e308], pa.float64()),
        }
    )
    source = tmp_path / "huge.parquet"
    pq.write_table(table, source)
    out = tmp_path / "out.parquet"
    result = invoke("--month", "1970-01", "--input", str(source), "--output", str(out), "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.output.strip().splitlines()[-1])  # type: ignore[attr-defined]
    assert summary["rows_dropped"]["zone_out_of_range"] == 2
    assert summary["rows_dropped"]["distance_out_of_range"] == 1
    assert summary["output"] is None
