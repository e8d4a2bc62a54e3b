"""The job on local parquet files: predictions, drop reasons, ids, idempotent reruns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from deploy_modes.batch import run_interval
from deploy_modes.batch.intervals import month_interval
from deploy_modes.batch.job import DROP_REASONS, BatchJob
from deploy_modes.batch.readers import ParquetReader
from deploy_modes.batch.writers import OUTPUT_SCHEMA, FileWriter, ParquetWriter, TableFile
from deploy_modes.core.data import write_month
from deploy_modes.core.errors import DeployError
from deploy_modes.core.features import in_duration_range
from deploy_modes.core.scoring import ModelService

COURSE_COLUMNS = [
    "ride_id",
    "lpep_pickup_datetime",
    "PULocationID",
    "DOLocationID",
    "actual_duration",
    "predicted_duration",
    "diff",
    "model_version",
]


def _score(source: Path, target: Path, service: ModelService, chunk_rows: int = 700) -> dict:
    return run_interval(
        "2021-03",
        input=str(source),
        output=str(target),
        model=service,
        chunk_rows=chunk_rows,
        say=lambda _m: None,
    )


def test_predictions_equal_the_core_row_by_row(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    out = tmp_path / "out.parquet"
    summary = _score(march_file, out, model_service)
    frame = pd.read_parquet(out)
    assert list(frame.columns) == COURSE_COLUMNS
    assert pq.read_schema(out).equals(OUTPUT_SCHEMA)
    assert len(frame) == summary["rows_written"] > 0
    source = pd.read_parquet(march_file)
    rows = source.iloc[[int(i.split("_")[1]) for i in frame["ride_id"]]]
    expected = [
        model_service.predict_one({"PULocationID": pu, "DOLocationID": do, "trip_distance": dist})
        for pu, do, dist in zip(
            rows["PULocationID"], rows["DOLocationID"], rows["trip_distance"], strict=True
        )
    ]
    np.testing.assert_allclose(frame["predicted_duration"], expected, rtol=0, atol=1e-9)
    actual = (rows["lpep_dropoff_datetime"] - rows["lpep_pickup_datetime"]).dt.total_seconds() / 60
    np.testing.assert_allclose(frame["actual_duration"], actual, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        frame["diff"], frame["actual_duration"] - frame["predicted_duration"], atol=1e-12
    )
    assert (frame["model_version"] == model_service.version).all()
    assert frame["lpep_pickup_datetime"].tolist() == rows["lpep_pickup_datetime"].tolist()


def test_the_course_duration_filter_is_counted_as_its_own_reason(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    summary = _score(march_file, tmp_path / "out.parquet", model_service)
    source = pd.read_parquet(march_file)
    minutes = (source.lpep_dropoff_datetime - source.lpep_pickup_datetime).dt.total_seconds() / 60
    kept = int(in_duration_range(minutes).sum())  # the core definition training uses too
    assert summary["rows_read"] == len(source)
    assert summary["rows_scored"] == kept
    assert summary["rows_dropped"]["duration_out_of_range"] == len(source) - kept > 0
    assert set(summary["rows_dropped"]) == set(DROP_REASONS)


def test_ride_ids_are_deterministic_and_independent_of_chunking(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    first = _score(march_file, tmp_path / "a.parquet", model_service, chunk_rows=64)
    second = _score(march_file, tmp_path / "b.parquet", model_service, chunk_rows=100_000)
    a = pd.read_parquet(tmp_path / "a.parquet")
    b = pd.read_parquet(tmp_path / "b.parquet")
    assert first["rows_written"] == second["rows_written"]
    pd.testing.assert_frame_equal(a, b)
    assert a["ride_id"].is_unique
    assert a["ride_id"].iloc[0].startswith("2021/03_")


def test_rerun_replaces_the_output(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    out = tmp_path / "out.parquet"
    _score(march_file, out, model_service)
    before = pd.read_parquet(out)
    _score(march_file, out, model_service)
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out.parquet"]


def test_nulls_and_out_of_range_values_are_dropped_and_counted(
    march_frame: pd.DataFrame, tmp_path: Path, model_service: ModelService
) -> None:
    frame = march_frame.copy()
    frame.loc[0, "PULocationID"] = 0
    frame.loc[1, "DOLocationID"] = 266
    frame.loc[2, "trip_distance"] = np.nan
    frame.loc[3, "trip_distance"] = -1.0
    frame.loc[4, "trip_distance"] = np.inf
    frame.loc[5, "trip_distance"] = 1e9
    frame.loc[6, "lpep_dropoff_datetime"] = pd.NaT
    frame.loc[7, "lpep_pickup_datetime"] = pd.NaT
    # Nullable zones: arrow keeps the int64 column, with nulls.
    frame["PULocationID"] = frame["PULocationID"].astype("Int64")
    frame.loc[8, "PULocationID"] = pd.NA
    source = tmp_path / "dirty.parquet"
    write_month(frame, source)
    summary = _score(source, tmp_path / "out.parquet", model_service)
    dropped = summary["rows_dropped"]
    assert dropped["zone_out_of_range"] >= 2
    assert dropped["missing_zone"] >= 1
    assert dropped["missing_distance"] >= 1
    assert dropped["distance_out_of_range"] >= 3
    assert dropped["missing_time"] >= 2
    assert summary["rows_read"] == len(frame)
    assert summary["rows_read"] == summary["rows_scored"] + sum(dropped.values())
    ids = set(pd.read_parquet(tmp_path / "out.parquet")["ride_id"])
    assert not ids & {f"2021/03_{i}" for i in range(9)}


def test_a_failing_chunk_leaves_no_output(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    """A job that dies mid-run (here: the reader raises) leaves the previous output alone."""

    class Exploding(ParquetReader):
        def chunks(self):  # type: ignore[no-untyped-def]
            for i, chunk in enumerate(super().chunks()):
                if i == 2:
                    raise RuntimeError("disk on fire")
                yield chunk

    out = tmp_path / "out" / "pred.parquet"
    job = BatchJob(Exploding(str(march_file), 500), ParquetWriter(str(out)), model_service)
    with pytest.raises(RuntimeError, match="disk on fire"):
        job.run(month_interval(2021, 3))
    assert list((tmp_path / "out").iterdir()) == []


def test_all_dropped_writes_nothing(
    march_frame: pd.DataFrame, tmp_path: Path, model_service: ModelService
) -> None:
    frame = march_frame.copy()
    frame["trip_distance"] = -5.0
    source = tmp_path / "bad.parquet"
    write_month(frame, source)
    summary = _score(source, tmp_path / "out.parquet", model_service)
    assert summary["rows_scored"] == 0
    assert summary["output"] is None
    assert not (tmp_path / "out.parquet").exists()


def test_yellow_taxi_columns_are_read(
    march_frame: pd.DataFrame, tmp_path: Path, model_service: ModelService
) -> None:
    frame = march_frame.rename(
        columns={
            "lpep_pickup_datetime": "tpep_pickup_datetime",
            "lpep_dropoff_datetime": "tpep_dropoff_datetime",
        }
    )[
        [
            "tpep_pickup_datetime",
            "tpep_dropoff_datetime",
            "PULocationID",
            "DOLocationID",
            "trip_distance",
        ]
    ]
    source = tmp_path / "yellow.parquet"
    frame.to_parquet(source)
    summary = _score(source, tmp_path / "out.parquet", model_service)
    assert summary["rows_written"] > 0


def test_nanosecond_and_zoned_timestamps_and_narrow_ints_are_read(
    tmp_path: Path, model_service: ModelService
) -> None:
    import pyarrow as pa

    start = 1_614_556_800_000_000_000  # 2021-03-01T00:00Z in ns, with sub-microsecond digits
    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array([start + 1, start + 7], pa.timestamp("ns", "UTC")),
            "lpep_dropoff_datetime": pa.array(
                [start + 600_000_000_003, start + 90 * 60 * 10**9], pa.timestamp("ns", "UTC")
            ),
            "PULocationID": pa.array([5, 7], pa.int32()),
            "DOLocationID": pa.array([5.0, 7.0]),
            "trip_distance": pa.array([1, 2], pa.int64()),
        }
    )
    source = tmp_path / "zoned.parquet"
    pq.write_table(table, source)
    summary = _score(source, tmp_path / "out.parquet", model_service)
    assert summary["rows_written"] == 1  # 10 minutes kept; 90 minutes dropped
    assert summary["rows_dropped"]["duration_out_of_range"] == 1
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert frame["actual_duration"].iloc[0] == pytest.approx(10.0)
    expected = model_service.predict_one(
        {"PULocationID": 5, "DOLocationID": 5, "trip_distance": 1.0}
    )
    assert frame["predicted_duration"].iloc[0] == pytest.approx(expected, abs=1e-9)


def test_the_output_folders_are_made_and_an_aborted_file_is_closed(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    out = tmp_path / "a" / "b" / "out.parquet"  # two folders to make
    assert _score(march_file, out, model_service)["rows_written"] > 0
    session = ParquetWriter(str(tmp_path / "c.parquet")).begin(month_interval(2021, 3))
    session.write(pq.read_table(out))
    session.abort()
    # An aborted temp file is deleted and closed: no descriptor of this process still holds it.
    held = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()]
    assert not [target for target in held if str(tmp_path) in target]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "data"]


def test_stale_temps_are_swept_and_a_failed_rename_is_one_error(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    out = tmp_path / "out" / "out.parquet"
    out.parent.mkdir()
    (out.parent / ".out.parquet.killed.tmp").write_bytes(b"left by a killed run")
    _score(march_file, out, model_service)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.parquet"]
    session = ParquetWriter(str(tmp_path / "late.parquet")).begin(month_interval(2021, 3))
    session.write(pq.read_table(out))
    (tmp_path / "late.parquet").mkdir()  # the target became a folder while the job ran
    with pytest.raises(DeployError, match=r"cannot write .*late\.parquet: Is a directory"):
        session.commit()
    session.abort()  # what the job does after a failed commit: the temp is gone, no error
    assert list((tmp_path / "late.parquet").iterdir()) == []
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _exclusive_parquet(path: str) -> TableFile:
    """Open ``path`` as a writer that insists on creating it: the OS refuses an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    return pq.ParquetWriter(os.fdopen(fd, "wb"), OUTPUT_SCHEMA)


def test_a_file_the_format_cannot_open_is_one_error_and_leaves_no_temp(
    march_file: Path, tmp_path: Path, model_service: ModelService
) -> None:
    out = tmp_path / "out" / "pred.parquet"
    writer = FileWriter(str(out), open_file=_exclusive_parquet)
    job = BatchJob(ParquetReader(str(march_file), 500), writer, model_service)
    with pytest.raises(DeployError, match=rf"^cannot write {out}: File exists$"):
        job.run(month_interval(2021, 3))
    assert list(out.parent.iterdir()) == []
