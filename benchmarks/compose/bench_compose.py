"""Benchmark: what the container costs the web mode, compose stack vs local gunicorn.

Both serve the same model with the same gunicorn settings (2 workers) on free loopback ports;
the compose one goes through Docker's port publishing (docker-proxy / NAT). Measured in one run:

* **start**: command start until ``/ready`` answers (compose: images already built, so this is
  a cached build check + ``up -d`` + the health wait; the first build is not timed);
* **latency**: p50 / p99 of sequential ``POST /predict`` requests on one keep-alive session;
* **throughput**: requests/s of 8 concurrent client threads.

It prints each figure for both runtimes and the compose/local ratio. The CPU is shared, so
only the ratios within one run mean anything. Needs a Docker engine (``bash .ci/docker.sh``).

Run: .venv/bin/python benchmarks/compose/bench_compose.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import requests

from deploy_modes.compose.runtime import docker_engine_answers
from deploy_modes.compose.stack import Stack
from deploy_modes.compose.stacks import WebStack, up_web
from deploy_modes.core.demo import ensure_model
from deploy_modes.core.settings import CoreSettings
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http

WORKERS = 2
CLIENT_THREADS = 8


def _rides(count: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(42)
    return [
        {
            "PULocationID": int(rng.integers(1, 266)),
            "DOLocationID": int(rng.integers(1, 266)),
            "trip_distance": float(np.round(rng.uniform(0.3, 25.0), 2)),
        }
        for _ in range(count)
    ]


def _latencies(url: str, rides: list[dict[str, float]]) -> list[float]:
    """Return seconds per sequential request on one keep-alive session."""
    seconds = []
    with requests.Session() as session:
        for ride in rides:
            started = time.perf_counter()
            response = session.post(f"{url}/predict", json=ride, timeout=10)
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
    return seconds


def _throughput(url: str, rides: list[dict[str, float]]) -> float:
    """Return requests/s of CLIENT_THREADS threads sharing the rides."""
    errors: list[BaseException] = []

    def client(part: list[dict[str, float]]) -> None:
        try:
            with requests.Session() as session:
                for ride in part:
                    session.post(f"{url}/predict", json=ride, timeout=10).raise_for_status()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    parts = [rides[i::CLIENT_THREADS] for i in range(CLIENT_THREADS)]
    threads = [threading.Thread(target=client, args=(part,)) for part in parts]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return len(rides) / (time.perf_counter() - started)


def _measure(name: str, start: Callable[[], str], rides: list[dict[str, float]]) -> dict:
    started = time.perf_counter()
    url = start()
    wait_http(f"{url}/ready", timeout=180)
    startup = time.perf_counter() - started
    _latencies(url, rides[:100])  # warm-up: imports, first connections
    seconds = sorted(_latencies(url, rides))
    figures = {
        "start_s": startup,
        "p50_ms": statistics.median(seconds) * 1000,
        "p99_ms": seconds[int(len(seconds) * 0.99) - 1] * 1000,
        "req_per_s": _throughput(url, rides),
    }
    print(f"  {name}: " + ", ".join(f"{k}={v:,.2f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> int:
    """Run both runtimes one after the other and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    args = parser.parse_args()
    answers, why = docker_engine_answers()
    if not answers:
        print(f"needs a Docker engine: {why} (bash .ci/docker.sh starts one)", file=sys.stderr)
        return 1
    if Stack("web").containers():
        print("a web stack already runs: deploy down web first", file=sys.stderr)
        return 1
    rides = _rides(args.requests)
    work = Path(tempfile.mkdtemp(prefix="bench-compose-"))
    os.chdir(work)  # the compose runtime stages the model under ./.deploy
    settings = CoreSettings(
        model_location=str(work / "model"), data_dir=work / "data", demo_rows=20_000
    )
    model = ensure_model(settings, lambda msg: print(f"  {msg}"))
    print(f"{why}; {args.requests:,} requests, {WORKERS} gunicorn workers, rides seeded 42")

    print("building the web image (not timed)", flush=True)
    up_web(WebStack(port=free_port(), workers=WORKERS, model=model))
    Stack("web").down()

    local_process: list[ManagedProcess] = []

    def start_local() -> str:
        port = free_port()
        deploy = str(Path(sys.executable).parent / "deploy")
        args_ = [deploy, "web", "--runtime", "local", "--port", str(port)]
        args_ += ["--workers", str(WORKERS), "--model", model]
        local_process.append(ManagedProcess("local web", args_, log_path=work / "local.log"))
        return f"http://127.0.0.1:{port}"

    def start_compose() -> str:
        port = free_port()
        up_web(WebStack(port=port, workers=WORKERS, model=model))
        return f"http://127.0.0.1:{port}"

    try:
        local = _measure("local  ", start_local, rides)
    finally:
        for process in local_process:
            process.stop()
    try:
        compose = _measure("compose", start_compose, rides)
    finally:
        Stack("web").down()
    print("compose / local ratios (1.00 = no cost; above 1 for time, below 1 for req/s):")
    for key in local:
        print(f"  {key:10s} {compose[key] / local[key]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
