"""Benchmark single-ride validation and the ``/predict`` fast path, in-process.

Run it at the commit before a validation change and after it: each run prints absolute
figures and ratios to a baseline timed in the same run (``json.loads`` of the body alone), so
two runs on a shared, noisy CPU can still be compared:

- validate: ``validate_ride(dict)``, us per ride;
- body -> ride: ``json.loads`` + ``validate_ride`` (what the web and stream paths do), and,
  when the schema module exists, ``RideRequest.model_validate_json`` (pydantic parsing and
  validating in one call);
- fast path: ``POST /predict`` requests/s through the WSGI app (``PredictFastPath``) without a
  server, so the figure is the CPU per request of the app alone.

Usage: .venv/bin/python benchmarks/core/bench_validation.py [--calls 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
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
        started = time.perf_counter_ns()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter_ns() - started) / batch / 1_000)
    return statistics.median(samples)


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
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    calls = args.calls
    figures: dict[str, float] = {}
    figures["json_loads_us"] = _median_call_us(lambda: json.loads(BODY), calls)
    figures["validate_dict_us"] = _median_call_us(lambda: validate_ride(RIDE), calls)
    figures["loads_validate_us"] = _median_call_us(lambda: validate_ride(json.loads(BODY)), calls)
    try:
        from deploy_modes.core.schema import RideRequest
    except ImportError:  # the commit before the schema module: no pydantic path to time
        pass
    else:
        figures["model_validate_json_us"] = _median_call_us(
            lambda: RideRequest.model_validate_json(BODY), calls
        )
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
