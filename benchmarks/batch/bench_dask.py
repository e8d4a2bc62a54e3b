"""Benchmark: ``--engine local`` vs ``--engine dask`` with 1 and 2 workers on the same rides.

Each Dask worker count runs both output layouts: ``file`` (the client appends every part to
one parquet file) and ``parts`` (``--output-parts``: the workers write a folder of parquet
parts). One run measures all five on the same files, so only the ratios between them mean
much on a shared machine. The local engine runs as a child ``deploy batch`` (its peak RSS from
``os.wait4``); each Dask run starts a local cluster (processes, one thread each), runs the
Python API against it and asks every worker for its own peak RSS (``getrusage``). Times are the
run's own (plan, score, publish). Like the local engine's, they leave out loading the model:
the cluster's start-up and each worker's model load (paid once per worker, never again on a
long-lived ``--scheduler`` cluster) are reported apart. The input (10 row groups of 1 M rides)
and the model (``model.skops``, trained as ``deploy train`` trains ``models/ride-duration``)
are made once into a cache outside the repository and reused by later runs. Usage:

    .venv/bin/python benchmarks/batch/bench_dask.py                    # 10M rows, 10 row groups
    .venv/bin/python benchmarks/batch/bench_dask.py --rows 2000000     # quicker
    DEPLOY_BENCH_CACHE=/data/bench .venv/bin/python benchmarks/batch/bench_dask.py
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
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
SEED = 42  # slice i of the input is generate_month(2021, 3, seed=SEED + i)
CACHE_ENV = "DEPLOY_BENCH_CACHE"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "deploy-bench-cache"  # outside the repo
YEAR_ROWS = 38_300_000  # yellow-taxi trips in 2023 (TLC trip records), about 3.2 M a month
LAYOUTS = ("file", "parts")
_PHASES = re.compile(
    r"(\d+) partitions scored in ([\d.]+)s \(a partition took ([\d.]+)s"
    r"(?:.*parts appended on the client in ([\d.]+)s)?"
)


def _cache_tag() -> str:
    """Return a short hash of the code that makes the rides and the model.

    The cache names what it holds: a change to the generator or to training makes new files
    instead of serving the old ones.
    """
    import deploy_modes.core.data as data
    import deploy_modes.core.training as training

    digest = hashlib.sha256()
    for module in (data, training):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def _model(cache: Path, tag: str) -> Path:
    """Return the real model artifact (model.skops + manifest), trained once per cache tag."""
    from deploy_modes.core.demo import ensure_model
    from deploy_modes.core.settings import CoreSettings, load_settings

    folder = cache / f"model-{tag}"
    # What `deploy train` (and a first `deploy batch`) writes to models/ride-duration, with
    # the same default months, rows and seed; ensure_model trains only if nothing is there.
    settings = load_settings(
        CoreSettings,
        model_location=str(folder / "ride-duration"),
        data_dir=folder / "data",
    )
    return Path(ensure_model(settings, say=lambda m: print(m, flush=True)))


def _rides(cache: Path, tag: str, rows: int) -> Path:
    """Return the cached input of ``rows`` rides, generating it slice by slice if missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deploy_modes.core.data import TLC_SCHEMA, generate_month

    source = cache / f"green_2021-03_{rows}_rg{ROW_GROUP}_seed{SEED}_{tag}.parquet"
    if source.is_file():
        print(f"input        : {source} (cached)", flush=True)
        return source
    # One row group per slice, written as it is made: memory stays one slice's worth, and a
    # run stopped midway leaves only a temp file that the next run overwrites.
    partial = source.with_suffix(".parquet.partial")
    started = time.perf_counter()
    with pq.ParquetWriter(partial, TLC_SCHEMA, compression="snappy") as writer:
        for index, first in enumerate(range(0, rows, ROW_GROUP)):
            size = min(ROW_GROUP, rows - first)
            frame = generate_month(2021, 3, rows=size, seed=SEED + index)
            writer.write_table(pa.Table.from_pandas(frame, schema=TLC_SCHEMA, preserve_index=False))
            print(
                f"generating   : {first + size:>11,} / {rows:,} rides"
                f" ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
    os.replace(partial, source)
    return source


def _prepare(cache: Path, rows: int) -> tuple[Path, Path]:
    """Return the input and the model, from the cache when an earlier run made them."""
    cache.mkdir(parents=True, exist_ok=True)
    tag = _cache_tag()
    return _rides(cache, tag, rows), _model(cache, tag)


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
    return {
        "seconds": summary["seconds"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "rows_dropped": summary["rows_dropped"],
    }


def _peak_rss_mb() -> float:
    """Return this process's own peak RSS (``VmHWM``), in MB.

    Not ``getrusage``: Linux carries ``ru_maxrss`` across fork and exec, so a worker the
    nanny starts reports the client's peak when that was larger (here: after comparing two
    10 M-row outputs in memory, 2.6 GB for every worker).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _load_model(ref: Any) -> float:
    """Load the model into this worker's cache (as a run's first task would); return seconds."""
    from deploy_modes.batch.dask_engine import worker_service

    started = time.perf_counter()
    worker_service(ref)
    return time.perf_counter() - started


def _dask(source: Path, model: Path, out: Path, workers: int, layout: str) -> dict[str, Any]:
    from deploy_modes.batch import run_interval
    from deploy_modes.batch.dask_engine import ModelRef, dask_client
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.scoring import ModelService

    started = time.perf_counter()
    # The engine's own local cluster, as `deploy batch --engine dask --workers N` starts it.
    with dask_client(workers, None, lambda _m: None) as client:
        # Start-up includes each worker's imports (seconds on a busy box), paid once per cluster.
        client.run(importlib.import_module, "deploy_modes.batch.dask_engine")
        startup = time.perf_counter() - started
        # Each worker loads the model before the clock starts, as the local engine does before
        # its own; the same cache entry (location and hash) the run's tasks then find.
        ref = ModelRef.of(ModelService(load_model(str(model))))
        loads = sorted(client.run(_load_model, ref).values())
        said: list[str] = []
        summary = run_interval(
            "2021-03", input=str(source), output=str(out), model=str(model),
            engine="dask", scheduler=client.scheduler.address, say=said.append,
            output_parts=layout == "parts",
        )  # fmt: skip
        rss = sorted(client.run(_peak_rss_mb).values())
    match = next(m for m in map(_PHASES.search, said) if m)
    return {
        "workers": workers,
        "layout": layout,
        "seconds": summary["seconds"],
        "scoring_s": float(match.group(2)),
        "publish_s": max(0.0, summary["seconds"] - float(match.group(2))),  # 2-decimal scoring
        "partitions": int(match.group(1)),
        "partition_s": float(match.group(3)),
        "client_append_s": float(match.group(4) or 0),  # parts: none
        "cluster_startup_s": startup,
        "model_load_s_per_worker": loads,
        "peak_rss_mb_per_worker": rss,
        "rows_dropped": summary["rows_dropped"],
    }


def main() -> None:
    """Run the three ways and print rows/s, speed-ups, peak RSS and the goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)),
        help=f"where the input and the model are kept between runs (env {CACHE_ENV}; "
        f"default {DEFAULT_CACHE})",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="outputs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs after the run")
    parser.add_argument("--prepare-only", type=Path, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.prepare_only is not None:
        source, model = _prepare(options.cache, options.rows)
        options.prepare_only.write_text(json.dumps({"source": str(source), "model": str(model)}))
        return
    # Prepare in a child, so this process (the Dask client) stays small; its progress lines
    # go straight to our output, the paths it settled on come back in a file.
    with tempfile.NamedTemporaryFile(suffix=".json") as made:
        prepare = [sys.executable, __file__, "--rows", str(options.rows)]
        prepare += ["--cache", str(options.cache), "--prepare-only", made.name]
        subprocess.run(prepare, check=True)
        paths = json.loads(Path(made.name).read_text())
    source, model = Path(paths["source"]), Path(paths["model"])
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        _compare(source, model, workdir, options.rows, options.keep)
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _compare(source: Path, model: Path, workdir: Path, rows: int, keep: bool) -> None:
    """Run the local engine and both layouts on 1 and 2 workers; print figures and goals."""
    before = os.getloadavg()
    local = _local(source, model, workdir / "local.parquet")
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for workers in (1, 2):
        for layout in LAYOUTS:
            out = workdir / f"dask{workers}-{layout}.parquet"
            run = runs[layout, workers] = _dask(source, model, out, workers, layout)
            run["identical"] = (
                _same_output(workdir / "local.parquet", out)
                and local["rows_dropped"] == run["rows_dropped"]
            )
            if not keep:
                _remove(out)  # a 10 M-row output is ~300 MB: keep one at a time
    after = os.getloadavg()
    partitions = runs["file", 1]["partitions"]
    print(f"rows         : {rows:,} in {partitions} partitions (row groups of {ROW_GROUP:,})")
    print(f"load average : {_loads(before)} before, {_loads(after)} after (1, 5, 15 min)")
    print(
        f"local        : {local['seconds']:6.2f}s = {rows / local['seconds']:>11,.0f} rows/s"
        f"  | peak RSS {local['peak_rss_mb']:.0f} MB"
    )
    for (layout, workers), run in runs.items():
        rss = ", ".join(f"{m:.0f}" for m in run["peak_rss_mb_per_worker"])
        rate = rows / run["seconds"]
        print(
            f"dask x{workers} {layout:<5} : {run['seconds']:6.2f}s = {rate:>11,.0f} rows/s"
            f"  | scoring {run['scoring_s']:.2f}s, publish {run['publish_s']:.2f}s,"
            f" {run['partition_s']:.3f}s per partition,"
            f" client appends {run['client_append_s']:.2f}s"
            f" | cluster start {run['cluster_startup_s']:.1f}s"
            f" + model load {max(run['model_load_s_per_worker']):.1f}s"
            f" | peak RSS per worker {rss} MB"
        )
    ok = {True: "met", False: "NOT met"}
    verdicts: dict[str, dict[str, float]] = {}
    for layout in LAYOUTS:
        one, two = runs[layout, 1], runs[layout, 2]
        speedup = one["scoring_s"] / two["scoring_s"]
        whole = one["seconds"] / two["seconds"]
        vs_local = one["seconds"] / local["seconds"]
        worst_rss = max(one["peak_rss_mb_per_worker"] + two["peak_rss_mb_per_worker"])
        verdicts[layout] = {"speedup_scoring": speedup, "speedup_whole": whole,
                            "one_worker_vs_local": vs_local, "worst_rss_mb": worst_rss}  # fmt: skip
        met = ok[speedup >= GOAL_SPEEDUP]
        print(f"{layout:<5} speed-up: 2 workers {speedup:.2f}x 1 worker on scoring"
              f" ({whole:.2f}x whole run)  goal >= {GOAL_SPEEDUP}: {met}")  # fmt: skip
        print(f"{layout:<5} vs local: 1 dask worker takes {vs_local:.2f}x the local engine"
              f"  goal <= {GOAL_VS_LOCAL}: {ok[vs_local <= GOAL_VS_LOCAL]}")  # fmt: skip
        print(f"{layout:<5} memory  : peak RSS per worker {worst_rss:.0f} MB"
              f"  goal <= {GOAL_RSS_MB}: {ok[worst_rss <= GOAL_RSS_MB]}")  # fmt: skip
        print(f"{layout:<5} output  : equal to local row by row (and drop counts):"
              f" x1 {one['identical']}, x2 {two['identical']}")  # fmt: skip
    # A year on N workers with a core each: scoring spreads over them at the 1-worker run's
    # per-row cost; with one file per month the client appends every row itself, so the run
    # takes at least the client's append time; the last month's publish comes after.
    for layout in LAYOUTS:
        one = runs[layout, 1]
        per_row = one["partition_s"] * one["partitions"] / rows
        append_per_row = one["client_append_s"] / rows
        tail = one["publish_s"]  # this run's 10 M rows: pessimistic for a 3.2 M-row month
        for n in (1, 2, 8, 32):
            scoring = per_row * YEAR_ROWS / n
            appending = append_per_row * YEAR_ROWS
            print(f"year {layout:<5}: {YEAR_ROWS:,} rows on {n:>2} workers ~"
                  f" {max(scoring, appending) + tail:6.1f}s (scoring {scoring:.1f}s,"
                  f" client appends {appending:.1f}s, last publish {tail:.1f}s)")  # fmt: skip
    print(json.dumps({"rows": rows, "local": local,
                      "dask": {f"{layout}_{n}": run for (layout, n), run in runs.items()},
                      "goals": verdicts,
                      "load_average": {"before": before, "after": after}}))  # fmt: skip


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _loads(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{a:.2f}" for a in averages)


def _same_output(a: Path, b: Path) -> bool:
    """Return whether two outputs hold the same rows, in order, with the same schema."""
    import pyarrow.parquet as pq

    ours, theirs = pq.read_table(a), pq.read_table(b)
    return ours.schema.equals(theirs.schema) and ours.equals(theirs)


if __name__ == "__main__":
    main()
