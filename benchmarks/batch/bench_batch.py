"""Benchmark: the course's ``score.py`` way vs ``deploy batch`` on the same generated month.

Both run as child processes from parquet file to parquet file; each child's peak RSS comes from
``os.wait4`` (that child's own rusage). CPU is shared, so only the ratio measured in this run
means much. Usage:

    .venv/bin/python benchmarks/batch/bench_batch.py                  # 1M rows, both ways
    .venv/bin/python benchmarks/batch/bench_batch.py --rows 5000000 --skip-course   # memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

RSS_LIMIT_MB = 1_536  # the bound for a 5M-row month: 1.5 GB


def course_score(input_file: str, output_file: str, model: str) -> float:
    """Score like the Zoomcamp's score.py; return seconds from read_parquet to to_parquet."""
    import pandas as pd

    from deploy_modes.core.artifact import load_model

    pipeline = load_model(model).pipeline
    started = time.perf_counter()
    df = pd.read_parquet(input_file)
    df["duration"] = df.lpep_dropoff_datetime - df.lpep_pickup_datetime
    df.duration = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
    df["ride_id"] = [str(uuid.uuid4()) for _ in range(len(df))]
    categorical = ["PULocationID", "DOLocationID"]
    df[categorical] = df[categorical].astype(str)
    df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]
    dicts = df[["PU_DO", "trip_distance"]].to_dict(orient="records")
    y_pred = pipeline.predict(dicts)
    result = pd.DataFrame()
    result["ride_id"] = df["ride_id"]
    result["lpep_pickup_datetime"] = df["lpep_pickup_datetime"]
    result["PULocationID"] = df["PULocationID"]
    result["DOLocationID"] = df["DOLocationID"]
    result["actual_duration"] = df["duration"]
    result["predicted_duration"] = y_pred
    result["diff"] = result["actual_duration"] - result["predicted_duration"]
    result["model_version"] = "course"
    result.to_parquet(output_file, index=False)
    return time.perf_counter() - started


def _run_child(args: list[str]) -> tuple[float, float, float]:
    """Run a child; return its wall seconds, its in-process file-to-file seconds, peak RSS MB."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        assert child.stdout is not None
        out = child.stdout.read()  # a JSON line; the child then exits
        # wait4 reaps this one child and returns its own rusage (peak RSS), not a sum.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stdout.close()
        if child.returncode != 0:
            err.seek(0)
            sys.exit(f"{args[:3]} failed ({child.returncode}): {err.read().decode()[-2000:]}")
    inner = float(json.loads(out.decode().strip().splitlines()[-1])["seconds"])
    return seconds, inner, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _prepare(workdir: Path, rows: int) -> tuple[Path, Path]:
    from deploy_modes.core.artifact import MANIFEST_FILE
    from deploy_modes.core.data import generate_month, month_file, write_month
    from deploy_modes.core.training import train_model

    data = workdir / "data"
    model = workdir / "model"
    for month in (1, 2):
        path = data / month_file(2021, month)
        if not path.is_file():
            write_month(generate_month(2021, month, rows=80_000, seed=42), path)
    if not (model / MANIFEST_FILE).is_file():
        train_model(data / month_file(2021, 1), data / month_file(2021, 2), model)
    month_path = workdir / f"green_{rows}.parquet"
    if not month_path.is_file():
        print(f"generating {rows:,} rides ...", flush=True)
        write_month(generate_month(2021, 3, rows=rows, seed=42), month_path)
    return month_path, model


def main() -> None:
    """Run both ways and print rows/s, the ratio and peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-course", action="store_true", help="only deploy batch (memory)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--course-worker", nargs=3, metavar=("IN", "OUT", "MODEL"))
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.course_worker:
        print(json.dumps({"seconds": course_score(*options.course_worker)}))
        return
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    if options.prepare_only:
        _prepare(workdir, options.rows)
        return
    # Generate in a child: a child's peak RSS counts the parent's pages it was forked with, so
    # this process must stay small for the measured children's figures to be their own.
    prepare = [sys.executable, __file__, "--prepare-only", "--rows", str(options.rows)]
    subprocess.run([*prepare, "--workdir", str(workdir)], check=True)
    source, model = workdir / f"green_{options.rows}.parquet", workdir / "model"
    deploy = str(Path(sys.executable).parent / "deploy")
    ours = workdir / "deploy.parquet"
    theirs = workdir / "course.parquet"
    deploy_args = [deploy, "batch", "--runtime", "local", "--month", "2021-03", "--json"]
    deploy_args += ["--input", str(source), "--output", str(ours), "--model", str(model)]
    d_wall, d_inner, d_rss = _run_child(deploy_args)
    rows = options.rows
    results: dict[str, object] = {
        "rows": rows,
        "deploy_batch": {"process_s": d_wall, "file_to_file_s": d_inner, "peak_rss_mb": d_rss},
    }
    print(
        f"deploy batch : {rows:,} rows  process {d_wall:6.2f}s = {rows / d_wall:>11,.0f} rows/s"
        f"  | file-to-file {d_inner:6.2f}s = {rows / d_inner:>11,.0f} rows/s"
        f"  | peak RSS {d_rss:5.0f} MB"
    )
    if not options.skip_course:
        course_args = [sys.executable, __file__, "--course-worker", str(source), str(theirs)]
        c_wall, c_inner, c_rss = _run_child([*course_args, str(model)])
        results["course"] = {"process_s": c_wall, "file_to_file_s": c_inner, "peak_rss_mb": c_rss}
        print(
            f"course way   : {rows:,} rows  process {c_wall:6.2f}s = {rows / c_wall:>11,.0f} rows/s"
            f"  | file-to-file {c_inner:6.2f}s = {rows / c_inner:>11,.0f} rows/s"
            f"  | peak RSS {c_rss:5.0f} MB"
        )
        import numpy as np
        import pandas as pd

        a = pd.read_parquet(ours, columns=["predicted_duration"])["predicted_duration"]
        b = pd.read_parquet(theirs, columns=["predicted_duration"])["predicted_duration"]
        same = len(a) == len(b)
        gap = float(np.max(np.abs(a.to_numpy() - b.to_numpy()))) if same and len(a) else None
        results["ratio_process"] = c_wall / d_wall
        results["ratio_file_to_file"] = c_inner / d_inner
        results["max_abs_prediction_diff"] = gap
        print(
            f"ratio        : deploy batch is {c_inner / d_inner:.1f}x the course's way file to "
            f"file (read parquet .. parquet written), {c_wall / d_wall:.1f}x as whole processes "
            "(both pay ~2 s of Python + scikit-learn start-up)"
        )
        print(f"predictions  : {len(a):,} vs {len(b):,} rows, max |diff| = {gap}")
    limit = "under" if d_rss < RSS_LIMIT_MB else "OVER"
    print(f"memory       : deploy batch peak RSS {d_rss:.0f} MB ({limit} {RSS_LIMIT_MB} MB)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
