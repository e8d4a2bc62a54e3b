"""Benchmark single-ride validation and the ``/predict`` fast path, in-process.

Times are CPU time of this thread (``time.thread_time_ns``), not wall time: the CPU is shared,
and time spent descheduled is not this code's cost. Each figure also prints as a ratio to
``json.loads`` of the same body timed in the same run:

- validate: ``validate_ride(dict)``, us per ride;
- body -> ride: ``json.loads`` + ``validate_ride`` (what the web and stream paths do), and,
  when the schema module exists, ``RideRequest.model_validate_json`` (pydantic parsing and
  validating in one call);
- fast path: ``POST /predict`` requests/s through the WSGI app (``PredictFastPath``) without a
  server, so the figure is the CPU per request of the app alone;
- ``--baseline REF``: also time ``validate_ride`` of ``core/validation.py`` as it was at git
  commit REF (loaded from history), interleaved with today's, for a same-run ratio.

For the fast path before a change, run the script against the old tree:
``git archive REF core web | tar -x -C /tmp/old/deploy_modes`` then
``PYTHONPATH=/tmp/old .venv/bin/python benchmarks/core/bench_validation.py``.

Usage: .venv/bin/python benchmarks/core/bench_validation.py [--calls 200000] [--baseline REF]
       [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from deploy_modes.core.artifact import load_model
from deploy_modes.core.data import generate_month, month_file, write_month
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.training import train_model
from deploy_modes.core.validation import validate_ride
from deploy_modes.web.app import create_app
from deploy_modes.web.settings import WebSettings

BODY = b'{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "ride_id": 7}'
RIDE = json.loads(BODY)


def _median_call_us(call: Any, calls: int, batch: int = 1000) -> float:
    """Return the median per-call time in microseconds over ``calls`` calls, timed in batches."""
    call()  # warm up
    samples = []
    for _ in range(max(calls // batch, 1)):
        started = time.thread_time_ns()
        for _ in range(batch):
            call()
        samples.append((time.thread_time_ns() - started) / batch / 1_000)
    return statistics.median(samples)


def _interleaved_us(calls: dict[str, Any], total: int, batch: int = 1000) -> dict[str, float]:
    """Return each call's median us, timing them in alternating batches (same load for all)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm up
    for _ in range(max(total // batch, 1)):
        for name, call in calls.items():
            started = time.thread_time_ns()
            for _ in range(batch):
                call()
            samples[name].append((time.thread_time_ns() - started) / batch / 1_000)
    return {name: statistics.median(values) for name, values in samples.items()}


def _baseline_validate(ref: str) -> Any:
    """Return ``validate_ride`` of ``core/validation.py`` at git commit ``ref``."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{ref}:core/validation.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("baseline_validation", handle.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    Path(handle.name).unlink()
    return module.validate_ride


def _fast_path_call(app: Any) -> Any:
    """Return a function that sends one ``POST /predict`` through the app's WSGI callable."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/predict",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "9696",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)),
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(BODY),
            "wsgi.url_scheme": "http",
            "wsgi.errors": io.StringIO(),
        }
        b"".join(app(environ, start_response))
        if statuses.pop() != "200 OK":
            raise SystemExit("the fast path did not answer 200: the benchmark is wrong")

    return call


def main() -> None:
    """Time validation and the fast path; print figures and same-run ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--baseline", help="git commit whose validate_ride to time as well")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    calls = args.calls
    calls_by_name: dict[str, Any] = {
        "json_loads_us": lambda: json.loads(BODY),
        "validate_dict_us": lambda: validate_ride(RIDE),
        "loads_validate_us": lambda: validate_ride(json.loads(BODY)),
    }
    if args.baseline:
        old = _baseline_validate(args.baseline)
        if old(RIDE).pu != validate_ride(RIDE).pu:
            raise SystemExit("the baseline and today's validation disagree: the benchmark is wrong")
        calls_by_name["baseline_validate_dict_us"] = lambda: old(RIDE)
        calls_by_name["baseline_loads_validate_us"] = lambda: old(json.loads(BODY))
    try:
        from deploy_modes.core.schema import RideRequest
    except ImportError:  # before the schema module: no pydantic path to time
        pass
    else:
        calls_by_name["model_validate_json_us"] = lambda: RideRequest.model_validate_json(BODY)
    figures = _interleaved_us(calls_by_name, calls)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for month in (1, 2):
            write_month(
                generate_month(2021, month, rows=20_000, seed=1), root / month_file(2021, month)
            )
        location = root / "model"
        train_model(root / month_file(2021, 1), root / month_file(2021, 2), location)
        service = ModelService(load_model(location))
    app = create_app(service, WebSettings(access_log=False))
    request_us = _median_call_us(_fast_path_call(app), calls // 10, batch=200)
    figures["fast_path_request_us"] = request_us
    figures["fast_path_requests_s"] = 1e6 / request_us
    base = figures["json_loads_us"]
    for name, value in figures.items():
        ratio = "" if name.endswith("_s") else f"  ({value / base:.2f}x json.loads)"
        print(f"{name:24} {value:12.2f}{ratio}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
