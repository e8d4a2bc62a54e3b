"""Benchmark the web service against the course's ``predict.py`` in the same run.

Run: ``.venv/bin/python benchmarks/web/bench_web.py`` (about a minute). It trains a small demo
model into a temp dir, starts both services with gunicorn on free loopback ports, loads
``POST /predict`` of each with the same client (``wrk``; a Python client when wrk is missing)
at several concurrencies, times ``POST /predict/batch`` with 1,000 rides, and prints
requests/s, p50/p99 latency, errors and the ratio to the baseline. The machine may be shared,
so absolute figures are noisy: the ratio, measured minutes apart, is the figure to read.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from deploy_modes.core.artifact import load_model
from deploy_modes.core.demo import ensure_model
from deploy_modes.core.settings import CoreSettings
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.web.settings import WebSettings

HERE = Path(__file__).resolve().parent
CONCURRENCIES = (1, 8, 64)
RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}
BATCH_RIDES = 1_000
BATCH_REPEATS = 40
DEMO_ROWS = 20_000
GOAL_RATIO_AT_8 = 2.0
GOAL_P99_AT_64_MS = 25.0
GOAL_BATCH_MS = 30.0
GOAL_V2_MS = 10.0  # issue 15: Open Inference Protocol infer of 1,000 rows, p50
_WRK_LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Point:
    """One load run: a server at one concurrency."""

    server: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float = float("nan")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--workers", type=int, default=None, help="our gunicorn workers")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument(
        "--worker-class",
        nargs="+",
        default=["asgi", "gthread"],
        help="our gunicorn worker classes: the first is 'ours' (the goals), others are shown too",
    )
    parser.add_argument("--threads", type=int, default=None, help="threads per gthread worker")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    args = parser.parse_args(argv)
    wrk = None if args.python_client else shutil.which("wrk")
    if wrk is None and not args.python_client:
        print("wrk not found (sudo apt-get install -y wrk): using the slower Python client")
    client = "wrk" if wrk else "python"

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        work = Path(tmp)
        settings = CoreSettings(
            model_location=str(work / "model"), data_dir=work / "data", demo_rows=DEMO_ROWS
        )
        location = ensure_model(settings, lambda msg: print(f"  {msg}"))
        loaded = load_model(location)
        version = loaded.version
        # The course's app unpickles its model: give it a pickle of the same pipeline.
        course_pickle = work / "course-model.pkl"
        course_pickle.write_bytes(pickle.dumps(loaded.pipeline))
        servers = {"course": _start_baseline(work, course_pickle)}
        for name, kind in _our_servers(args).items():
            servers[name] = _start_ours(work, name, location, args.workers, kind, args.threads)
        try:
            for url in servers.values():
                _python_load(f"{url}/predict", 4, 1.0)  # warm up: imports, first requests
            points: list[Point] = []
            for concurrency in args.concurrency:
                for name, url in servers.items():  # interleaved: drift hits both alike
                    run = _wrk_load if wrk else _python_load_point
                    before = _cpu_seconds(_SERVER_PIDS[name])
                    point = run(name, f"{url}/predict", concurrency, args.duration)
                    spent = _cpu_seconds(_SERVER_PIDS[name]) - before
                    point.cpu_us = spent / max(point.requests, 1) * 1e6
                    points.append(point)
            batch = _batch_latencies(servers["ours"])
            v2 = _v2_latencies(servers["ours"], loaded.name)
        finally:
            for process in _PROCESSES:
                process.stop()
    _report(points, batch, v2, client, args.duration, version, _describe_ours(args))
    return 0


_PROCESSES: list[ManagedProcess] = []
_SERVER_PIDS: dict[str, int] = {}


def _cpu_seconds(pid: int) -> float:
    """Return the CPU time used so far by a server: its master and its workers."""
    master = psutil.Process(pid)
    total = 0.0
    for process in [master, *master.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _start_baseline(work: Path, pickle_path: Path) -> str:
    port = free_port()
    args = ["-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--chdir", str(HERE)]
    args += ["--bind", f"127.0.0.1:{port}", "--no-control-socket", "course_predict:app"]
    process = ManagedProcess.python(
        "course predict.py",
        args,
        env={"BASELINE_MODEL_PKL": str(pickle_path)},
        log_path=work / "course.log",
    )
    _PROCESSES.append(process)
    _SERVER_PIDS["course"] = process.pid
    return _wait_ready(f"http://127.0.0.1:{port}", process, "/predict")


def _start_ours(
    work: Path,
    name: str,
    location: str,
    workers: int | None,
    worker_class: str | None,
    threads: int | None,
) -> str:
    port = free_port()
    env = {"DEPLOY_MODEL_LOCATION": location, "DEPLOY_WEB_PORT": str(port)}
    for setting, value in (
        ("WORKERS", workers),
        ("WORKER_CLASS", worker_class),
        ("THREADS", threads),
    ):
        if value:
            env[f"DEPLOY_WEB_{setting}"] = str(value)
    args = ["-m", "gunicorn", "-c", "python:deploy_modes.web.gunicorn_conf"]
    process = ManagedProcess.python(
        f"deploy web ({worker_class})", args, env=env, log_path=work / f"{name}.log"
    )
    _PROCESSES.append(process)
    _SERVER_PIDS[name] = process.pid
    return _wait_ready(f"http://127.0.0.1:{port}", process, "/ready")


def _wait_ready(url: str, process: ManagedProcess, path: str) -> str:
    if path == "/predict":  # the course's app has no readiness endpoint: a GET answers 405
        wait_http(f"{url}/predict", timeout=60, process=process)
    else:
        wait_http(f"{url}{path}", timeout=60, process=process)
    return url


def _wrk_load(name: str, url: str, concurrency: int, seconds: float) -> Point:
    script = Path(tempfile.gettempdir()) / f"bench-web-{os.getpid()}.lua"
    script.write_text(_WRK_LUA.format(body=json.dumps(RIDE)))
    threads = min(concurrency, 2)
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s"]
    command += ["--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    script.unlink(missing_ok=True)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Point(
        name,
        concurrency,
        float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        _wrk_latency(out, "50%"),
        _wrk_latency(out, "99%"),
        errors,
        int(re.search(r"(\d+) requests in", out).group(1)),
    )


def _wrk_latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s|m)\b", out).groups()
    return float(value) * _UNITS[unit]


def _python_load_point(name: str, url: str, concurrency: int, seconds: float) -> Point:
    latencies, errors, elapsed = _python_load(url, concurrency, seconds)
    latencies.sort()
    return Point(
        name,
        concurrency,
        len(latencies) / elapsed,
        _percentile(latencies, 50),
        _percentile(latencies, 99),
        errors,
        len(latencies) + errors,
    )


def _python_load(url: str, concurrency: int, seconds: float) -> tuple[list[float], int, float]:
    """Post RIDE from ``concurrency`` threads for ``seconds``; return latencies (ms), errors."""
    host, port, path = _split(url)
    body = json.dumps(RIDE).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        mine: list[float] = []
        failed = 0
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = response_ = conn.getresponse()
                response_.read()
                ok = response.status == 200
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            if ok:
                mine.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - started


def _batch_latencies(url: str) -> list[float]:
    """Return client-side latencies (ms) of POST /predict/batch with BATCH_RIDES rides."""
    rng = random.Random(7)
    rides = [
        {
            "PULocationID": rng.randint(1, 265),
            "DOLocationID": rng.randint(1, 265),
            "trip_distance": round(rng.uniform(0.1, 30), 2),
            "ride_id": i,
        }
        for i in range(BATCH_RIDES)
    ]
    body = json.dumps({"rides": rides}).encode()
    host, port, path = _split(f"{url}/predict/batch")
    latencies = []
    for _ in range(BATCH_REPEATS + 3):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        started = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        latencies.append((time.perf_counter() - started) * 1000)
        conn.close()
        if response.status != 200 or len(answer["predictions"]) != BATCH_RIDES:
            raise SystemExit(f"/predict/batch failed: {response.status}")
    return sorted(latencies[3:])  # the first few warm caches up


def _v2_latencies(url: str, model: str) -> list[float]:
    """Return client-side latencies (ms) of a V2 infer of BATCH_RIDES rows (columnar tensors)."""
    rng = random.Random(7)
    columns = {
        "PULocationID": ("INT64", [rng.randint(1, 265) for _ in range(BATCH_RIDES)]),
        "DOLocationID": ("INT64", [rng.randint(1, 265) for _ in range(BATCH_RIDES)]),
        "trip_distance": ("FP64", [round(rng.uniform(0.1, 30), 2) for _ in range(BATCH_RIDES)]),
    }
    inputs = [
        {"name": name, "shape": [BATCH_RIDES], "datatype": datatype, "data": data}
        for name, (datatype, data) in columns.items()
    ]
    body = json.dumps({"inputs": inputs}).encode()
    host, port, path = _split(f"{url}/v2/models/{model}/infer")
    latencies = []
    conn = http.client.HTTPConnection(host, port, timeout=30)  # kept alive, as V2 clients do
    for _ in range(BATCH_REPEATS + 3):
        started = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200 or answer["outputs"][0]["shape"] != [BATCH_RIDES]:
            raise SystemExit(f"V2 infer failed: {response.status} {answer}")
    conn.close()
    return sorted(latencies[3:])


def _split(url: str) -> tuple[str, int, str]:
    rest = url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, round(pct / 100 * (len(values) - 1)))
    return values[index]


def _describe_ours(args: argparse.Namespace) -> str:
    defaults = WebSettings()
    workers = args.workers or defaults.workers
    described = []
    for name, kind in _our_servers(args).items():
        threads = f" x {args.threads or defaults.threads} threads" if kind == "gthread" else ""
        described.append(f"{name}: {workers} {kind} workers{threads}")
    return "; ".join(described)


def _our_servers(args: argparse.Namespace) -> dict[str, str]:
    """Return our servers' names and worker classes: the first is "ours", whose goals count."""
    first, *others = args.worker_class
    return {"ours": first, **{kind: kind for kind in others}}


def _report(
    points: list[Point],
    batch: list[float],
    v2: list[float],
    client: str,
    seconds: float,
    version: str,
    ours: str,
) -> None:
    load = os.getloadavg()[0]
    print()
    print(
        f"web benchmark: POST /predict, client {client}, {seconds:g} s per point, "
        f"model {version}, {os.cpu_count()} CPUs, load average {load:.1f} at the end"
    )
    print(f"baseline: course predict.py, gunicorn 1 sync worker; {ours}")
    print()
    header = f"{'conc':>5} {'server':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    print(f"{header} {'server CPU us/req':>18}")
    for p in points:
        print(
            f"{p.concurrency:>5} {p.server:>7} {p.rps:>9.0f} {p.p50_ms:>8.2f} "
            f"{p.p99_ms:>8.2f} {p.errors:>7} {p.cpu_us:>18.0f}"
        )
    print()
    ratios = {}
    for concurrency in sorted({p.concurrency for p in points}):
        pair = {p.server: p for p in points if p.concurrency == concurrency}
        ratios[concurrency] = pair["ours"].rps / pair["course"].rps
        cpu_ratio = pair["course"].cpu_us / pair["ours"].cpu_us
        print(
            f"concurrency {concurrency}: ours/course req/s {ratios[concurrency]:.2f}x; "
            f"course/ours server CPU per request {cpu_ratio:.2f}x"
        )
    p50, p99 = _percentile(batch, 50), _percentile(batch, 99)
    print(f"/predict/batch with {BATCH_RIDES} rides: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    v2_p50, v2_p99 = _percentile(v2, 50), _percentile(v2, 99)
    print(f"V2 infer with {BATCH_RIDES} rows: p50 {v2_p50:.1f} ms, p99 {v2_p99:.1f} ms")
    print()
    mine = {p.concurrency: p for p in points if p.server == "ours"}
    goals = []
    if 8 in ratios:
        goals.append((f">= {GOAL_RATIO_AT_8:g}x baseline at c=8", ratios[8] >= GOAL_RATIO_AT_8))
    if 64 in mine:
        goals.append(
            (f"p99 <= {GOAL_P99_AT_64_MS:g} ms at c=64", mine[64].p99_ms <= GOAL_P99_AT_64_MS)
        )
    goals.append(("zero errors (ours)", all(p.errors == 0 for p in mine.values())))
    goals.append((f"batch of {BATCH_RIDES} p50 <= {GOAL_BATCH_MS:g} ms", p50 <= GOAL_BATCH_MS))
    goals.append((f"V2 infer of {BATCH_RIDES} p50 <= {GOAL_V2_MS:g} ms", v2_p50 <= GOAL_V2_MS))
    for goal, met in goals:
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
