"""Benchmark the core: single-ride and vectorized scoring against sklearn, and data generation.

Every figure is printed next to a baseline measured in the same run (the CPU is shared, so
absolute numbers are noisy; the ratios are what to compare):

- single ride: ``ModelService.predict_one(payload)`` median vs ``pipeline.predict([dict])``
  (goal: <= 20 us);
- vectorized: ``ModelService.predict_arrays`` on a DataFrame's columns vs the course's way,
  ``PU_DO`` string column + ``to_dict(orient="records")`` + ``pipeline.predict``
  (goal: >= 5M rows/s);
- data: ``generate_month`` + ``write_month`` of 1,000,000 rows (goal: < 10 s).

Usage: .venv/bin/python benchmarks/core/bench_scoring.py [--rows 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deploy_modes.core.artifact import load_model
from deploy_modes.core.data import generate_month, month_file, write_month
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.training import train_model
from deploy_modes.core.validation import invalid_reasons

SINGLE_GOAL_US = 20.0
VECTOR_GOAL_ROWS_S = 5_000_000
GENERATE_GOAL_S = 10.0
PROOF_GOAL_MS = 200.0
RIDE = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}


def _median_call_us(call: Any, calls: int, batch: int) -> float:
    """Return the median per-call time in microseconds over ``calls`` calls, timed in batches."""
    call()  # warm up
    samples = []
    for _ in range(max(calls // batch, 1)):
        started = time.perf_counter_ns()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter_ns() - started) / batch / 1_000)
    return statistics.median(samples)


def _best_seconds(call: Any, repeat: int) -> float:
    """Return the best wall time of ``repeat`` runs (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _course_way(frame: pd.DataFrame, pipeline: Any) -> np.ndarray:
    """Score rides the course's way: a PU_DO string column, one dict per row, sklearn."""
    df = frame[["PULocationID", "DOLocationID", "trip_distance"]].copy()
    df["PU_DO"] = df["PULocationID"].astype(str) + "_" + df["DOLocationID"].astype(str)
    dicts = df[["PU_DO", "trip_distance"]].to_dict(orient="records")
    return pipeline.predict(dicts)


def _fast_way(frame: pd.DataFrame, service: ModelService) -> np.ndarray:
    """Score rides with the service's vectorized path straight from the frame's columns."""
    return service.predict_arrays(
        frame["PULocationID"].to_numpy(),
        frame["DOLocationID"].to_numpy(),
        frame["trip_distance"].to_numpy(),
    )


def _verdict(ok: bool) -> str:
    return "goal met" if ok else "goal MISSED"


def main() -> None:
    """Run the three measurements and print figures, ratios and goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for vectorized scoring")
    parser.add_argument("--course-rows", type=int, default=200_000, help="rows for the course way")
    parser.add_argument("--calls", type=int, default=20_000, help="single-ride calls")
    parser.add_argument("--baseline-calls", type=int, default=400, help="sklearn single calls")
    parser.add_argument("--model", help="model location (default: train one on generated data)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    results: dict[str, Any] = {}

    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        root = Path(tmp)
        # 1. data generation
        started = time.perf_counter()
        frame = generate_month(2021, 3, rows=1_000_000, seed=1)
        generated = time.perf_counter() - started
        write_month(frame, root / month_file(2021, 3))
        total = time.perf_counter() - started
        results["generate_1m_s"] = total
        print("data generation (1,000,000 rows)")
        print(
            f"  generate {generated:.2f} s + write {total - generated:.2f} s = {total:.2f} s"
            f"  (goal < {GENERATE_GOAL_S:.0f} s: {_verdict(total < GENERATE_GOAL_S)})"
        )

        # The model: the course's linear pipeline on two generated months.
        if args.model:
            location = args.model
        else:
            for mon in (1, 2):
                write_month(
                    generate_month(2021, mon, rows=80_000, seed=42), root / month_file(2021, mon)
                )
            location = str(root / "model")
            train_model(root / month_file(2021, 1), root / month_file(2021, 2), location)
        loaded = load_model(location)
        service = ModelService(loaded)
        pipeline = service.pipeline
        print(f"model {service.version} ({service.fast_path} path: {service.scoring_reason})")

        # 1b. the load-time proof: building the service proves its shortcut on the probe set.
        proof_s = _best_seconds(lambda: ModelService(loaded), 5)
        results.update(proof_ms=proof_s * 1e3, vocabulary=service.scheme.width)
        print(f"load-time proof ({service.scheme.width:,} vectorizer columns; best of 5)")
        print(
            f"  ModelService(model)  {proof_s * 1e3:8.1f} ms"
            f"  (goal < {PROOF_GOAL_MS:.0f} ms: {_verdict(proof_s * 1e3 < PROOF_GOAL_MS)})"
        )

        # 2. single ride
        ours = _median_call_us(lambda: service.predict_one(RIDE), args.calls, 100)
        features = {"PU_DO": "74_75", "trip_distance": 2.5}
        theirs = _median_call_us(lambda: pipeline.predict([features]), args.baseline_calls, 10)
        assert abs(service.predict_one(RIDE) - pipeline.predict([features])[0]) < 1e-9
        results.update(single_us=ours, single_sklearn_us=theirs, single_speedup=theirs / ours)
        print("single ride, in-process (median per call)")
        print(
            f"  ModelService.predict_one  {ours:8.2f} us"
            f"  (goal <= {SINGLE_GOAL_US:.0f} us: {_verdict(ours <= SINGLE_GOAL_US)})"
        )
        print(f"  sklearn pipeline.predict  {theirs:8.2f} us  (baseline, same run)")
        print(f"  ratio: {theirs / ours:.0f}x faster than the baseline")

        # 3. vectorized: only valid rows, as batch scores them after validation.
        big = generate_month(2021, 4, rows=args.rows, seed=2)
        reasons = invalid_reasons(
            big["PULocationID"].to_numpy("float64"),
            big["DOLocationID"].to_numpy("float64"),
            big["trip_distance"].to_numpy("float64"),
        )
        bad = np.logical_or.reduce(list(reasons.values()))
        big = big.loc[~bad].reset_index(drop=True)
        small = big.iloc[: args.course_rows]
        np.testing.assert_allclose(
            _fast_way(small, service), _course_way(small, pipeline), rtol=0, atol=1e-9
        )
        fast_s = _best_seconds(lambda: _fast_way(big, service), 5)
        course_s = _best_seconds(lambda: _course_way(small, pipeline), 2)
        fast_rate, course_rate = len(big) / fast_s, len(small) / course_s
        results.update(
            vector_rows_s=fast_rate,
            course_rows_s=course_rate,
            vector_speedup=fast_rate / course_rate,
        )
        print(f"vectorized scoring ({len(big):,} rows; course way on {len(small):,})")
        print(
            f"  ModelService.predict_arrays  {fast_rate / 1e6:8.2f} M rows/s"
            f"  (goal >= {VECTOR_GOAL_ROWS_S / 1e6:.0f}M: "
            f"{_verdict(fast_rate >= VECTOR_GOAL_ROWS_S)})"
        )
        print(
            f"  course to_dict + predict     {course_rate / 1e6:8.2f} M rows/s"
            "  (baseline, same run)"
        )
        print(f"  ratio: {fast_rate / course_rate:.0f}x faster than the baseline")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
