"""Benchmark: ``--engine local`` vs ``--engine dask`` with 1 and 2 workers on the same rides.

One run measures all three on the same files, so only the ratios between them mean much on a
shared machine. The local engine runs as a child ``deploy batch`` (its peak RSS from
``os.wait4``); each Dask run starts a local cluster (processes, one thread each), runs the
Python API against it and asks every worker for its own peak RSS (``getrusage``). Times are the
run's own (plan, score, publish), not the cluster's start-up, which is reported apart. Usage:

    .venv/bin/python benchmarks/batch/bench_dask.py                    # 10M rows, 10 files' worth
    .venv/bin/python benchmarks/batch/bench_dask.py --rows 2000000     # quicker
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROW_GROUP = 1_000_000  # several row groups per month: one task each at the default size
GOAL_SPEEDUP = 1.6  # 2 workers vs 1 worker, on the scoring phase
GOAL_VS_LOCAL = 1.5  # the 1-worker Dask run within 1.5x of the local engine
GOAL_RSS_MB = 600  # peak RSS per worker
YEAR_ROWS = 40_000_000  # about a year of yellow-taxi trips (2023: 38.3 M)
_PHASES = re.compile(r"(\d+) partitions scored in ([\d.]+)s \(a partition took ([\d.]+)s")


def _prepare(workdir: Path, rows: int) -> tuple[Path, Path]:
    from deploy_modes.core.data import generate_month, month_file, write_month
    from deploy_modes.core.training import train_model

    data, model = workdir / "data", workdir / "model"
    for month in (1, 2):
        path = data / month_file(2021, month)
        if not path.is_file():
            write_month(generate_month(2021, month, rows=80_000, seed=42), path)
    if not (model / "model.pkl").is_file():
        train_model(data / month_file(2021, 1), data / month_file(2021, 2), model)
    source = workdir / f"green_{rows}.parquet"
    if not source.is_file():
        print(f"generating {rows:,} rides ...", flush=True)
        frame = generate_month(2021, 3, rows=rows, seed=42)
        write_month(frame, source, row_group_size=ROW_GROUP)
    return source, model


def _local(source: Path, model: Path, out: Path) -> dict[str, float]:
    deploy = str(Path(sys.executable).parent / "deploy")
    args = [deploy, "batch", "--runtime", "local", "--month", "2021-03", "--json"]
    args += ["--input", str(source), "--output", str(out), "--model", str(model)]
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)
        assert child.stdout is not None
        text = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.stdout.close()
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"local run failed: {err.read().decode()[-2000:]}")
    summary = json.loads(text.decode().strip().splitlines()[-1])
    return {"seconds": summary["seconds"], "peak_rss_mb": usage.ru_maxrss / 1024}


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dask(source: Path, model: Path, out: Path, workers: int) -> dict[str, Any]:
    from deploy_modes.batch import run_interval
    from deploy_modes.batch.dask_engine import dask_client

    started = time.perf_counter()
    # The engine's own local cluster, as `deploy batch --engine dask --workers N` starts it.
    with dask_client(workers, None, lambda _m: None) as client:
        # Start-up includes each worker's imports (seconds on a busy box), paid once per cluster.
        client.run(importlib.import_module, "deploy_modes.batch.dask_engine")
        startup = time.perf_counter() - started
        said: list[str] = []
        summary = run_interval(
            "2021-03", input=str(source), output=str(out), model=str(model),
            engine="dask", scheduler=client.scheduler.address, say=said.append,
        )  # fmt: skip
        rss = sorted(client.run(_peak_rss_mb).values())
    match = next(m for m in map(_PHASES.search, said) if m)
    return {
        "workers": workers,
        "seconds": summary["seconds"],
        "scoring_s": float(match.group(2)),
        "publish_s": summary["seconds"] - float(match.group(2)),
        "partitions": int(match.group(1)),
        "partition_s": float(match.group(3)),
        "cluster_startup_s": startup,
        "peak_rss_mb_per_worker": rss,
    }


def main() -> None:
    """Run the three ways and print rows/s, speed-ups, peak RSS and the goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    if options.prepare_only:
        _prepare(workdir, options.rows)
        return
    # Generate in a child, so this process (the Dask client) stays small.
    prepare = [sys.executable, __file__, "--prepare-only", "--rows", str(options.rows)]
    subprocess.run([*prepare, "--workdir", str(workdir)], check=True)
    source, model = workdir / f"green_{options.rows}.parquet", workdir / "model"
    rows = options.rows
    local = _local(source, model, workdir / "local.parquet")
    one = _dask(source, model, workdir / "dask1.parquet", 1)
    two = _dask(source, model, workdir / "dask2.parquet", 2)

    import pandas as pd

    same = pd.read_parquet(workdir / "local.parquet").equals(
        pd.read_parquet(workdir / "dask2.parquet")
    )
    print(
        f"rows         : {rows:,} in {one['partitions']} partitions (row groups of {ROW_GROUP:,})"
    )
    print(
        f"local        : {local['seconds']:6.2f}s = {rows / local['seconds']:>11,.0f} rows/s"
        f"  | peak RSS {local['peak_rss_mb']:.0f} MB"
    )
    for run in (one, two):
        rss = ", ".join(f"{m:.0f}" for m in run["peak_rss_mb_per_worker"])
        rate = rows / run["seconds"]
        print(
            f"dask x{run['workers']}      : {run['seconds']:6.2f}s = {rate:>11,.0f} rows/s"
            f"  | scoring {run['scoring_s']:.2f}s, publish {run['publish_s']:.2f}s,"
            f" {run['partition_s']:.3f}s per partition"
            f" | cluster start {run['cluster_startup_s']:.1f}s | peak RSS per worker {rss} MB"
        )
    speedup = one["scoring_s"] / two["scoring_s"]
    whole = one["seconds"] / two["seconds"]
    vs_local = one["seconds"] / local["seconds"]
    worst_rss = max(one["peak_rss_mb_per_worker"] + two["peak_rss_mb_per_worker"])
    ok = {True: "met", False: "NOT met"}
    print(f"speed-up     : 2 workers {speedup:.2f}x 1 worker on scoring ({whole:.2f}x whole run)"
          f"  goal >= {GOAL_SPEEDUP}: {ok[speedup >= GOAL_SPEEDUP]}")  # fmt: skip
    print(f"vs local     : 1 dask worker takes {vs_local:.2f}x the local engine"
          f"  goal <= {GOAL_VS_LOCAL}: {ok[vs_local <= GOAL_VS_LOCAL]}")  # fmt: skip
    print(f"memory       : peak RSS per worker {worst_rss:.0f} MB"
          f"  goal <= {GOAL_RSS_MB}: {ok[worst_rss <= GOAL_RSS_MB]}")  # fmt: skip
    per_row = one["partition_s"] * one["partitions"] / rows
    print(f"output       : dask x2 equals local row by row: {same}")
    for n in (1, 2, 8, 32):
        # Scoring spreads over n workers; publishing one file is one process's work.
        publish = two["publish_s"] * YEAR_ROWS / rows
        print(f"year estimate: {YEAR_ROWS:,} rows on {n:>2} workers ~ "
              f"{per_row * YEAR_ROWS / n + publish:6.1f}s (scoring {per_row * YEAR_ROWS / n:.1f}s"
              f" + publishing {publish:.1f}s)")  # fmt: skip
    print(json.dumps({"rows": rows, "local": local, "dask_1": one, "dask_2": two,
                      "speedup_scoring": speedup, "one_worker_vs_local": vs_local,
                      "identical": same}))  # fmt: skip


if __name__ == "__main__":
    main()
