"""Benchmark the web service against the course's ``predict.py`` and the peers, in one run.

Run: ``.venv/bin/python benchmarks/web/bench_web.py`` (a few minutes; the first run also builds
one venv per peer under ``~/.cache/deploy-modes/bench-venvs``). It trains a small demo model into
a temp dir, starts our service and the course's app with gunicorn, and the peers a user would
pick instead (MLServer with a custom runtime, BentoML, ``mlflow models serve`` at our worker
count and at one worker; ``peer_servers.py``) serving the same pipeline, each on a free loopback
port. Every server must predict our answer for one ride or it is refused. It loads each with
the same client (``wrk``; a Python client when wrk is missing) at several concurrencies,
interleaved, times ``POST /predict/batch`` and a V2 infer with 1,000 rides, and prints
requests/s, p50/p99 latency, errors, server CPU per request and the ratios. The machine may be
shared, so absolute figures are noisy: the ratios, measured seconds apart, are the figures to read.
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
from peer_servers import PEERS, PeerError, PeerServer, start_peer

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
GOAL_P99_AT_64_MS = 15.0  # issue 15 (was 25)
GOAL_PEER_RATIO_AT_8 = 5.0  # issue 15: ours >= 5x every peer's req/s at c=8
GOAL_CPU_US = 150.0  # issue 15: server CPU per /predict request, at c=8 and c=64
GOAL_BATCH_MS = 30.0
GOAL_V2_MS = 10.0  # issue 15: Open Inference Protocol infer of 1,000 rows, p50
# Which --peers name starts which peer_servers entries: MLflow at our worker count and at one.
PEER_GROUPS = {
    "mlserver": ("mlserver",),
    "bentoml": ("bentoml",),
    "mlflow": ("mlflow", "mlflow-w1"),
}
_WRK_LUA = """wrk.method = "POST"
wrk.body = [==[{body}]==]
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


@dataclass(frozen=True)
class Target:
    """One server under load: the URL and body to post, and its process tree's root."""

    name: str
    url: str
    body: bytes
    pid: int


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
    parser.add_argument(
        "--peers",
        default=",".join(PEER_GROUPS),
        help="comma-separated peers to start (mlserver, bentoml, mlflow); '' for none",
    )
    args = parser.parse_args(argv)
    peer_names = [name for group in _peer_groups(args.peers) for name in PEER_GROUPS[group]]
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
        body = json.dumps(RIDE).encode()
        peers: list[PeerServer] = []
        try:
            servers = {"course": _start_baseline(work, course_pickle)}
            for name, kind in _our_servers(args).items():
                servers[name] = _start_ours(work, name, location, args.workers, kind, args.threads)
            targets = [
                Target(name, f"{url}/predict", body, _SERVER_PIDS[name])
                for name, url in servers.items()
            ]
            expected = _ours_prediction(servers["ours"])
            workers = args.workers or WebSettings().workers
            for name in peer_names:
                try:
                    peer = start_peer(name, work, course_pickle, workers, RIDE, expected)
                except (PeerError, OSError, subprocess.CalledProcessError) as exc:
                    print(f"peer {name} left out: {exc}")
                    continue
                peers.append(peer)
                targets.append(Target(name, peer.url, peer.body, peer.pid))
            for target in targets:
                _python_load(target.url, 4, 1.0, target.body)  # warm up: imports, first requests
            points: list[Point] = []
            for concurrency in args.concurrency:
                for target in targets:  # interleaved: drift hits all alike
                    run = wrk_load if wrk else _python_load_point
                    before = cpu_seconds(target.pid)
                    point = run(target, concurrency, args.duration)
                    spent = cpu_seconds(target.pid) - before
                    point.cpu_us = spent / max(point.requests, 1) * 1e6
                    points.append(point)
            batch = _batch_latencies(servers["ours"])
            v2 = _v2_latencies(servers["ours"], loaded.name)
        finally:
            for peer in peers:
                peer.stop()
            for process in _PROCESSES:
                process.stop()
    described = [f"baseline: course predict.py, gunicorn 1 sync worker; {_describe_ours(args)}"]
    described += [
        f"{peer.name}: {peer.workers} workers, {peer.request_format}, {peer.url}" for peer in peers
    ]
    _report(points, batch, v2, client, args.duration, version, described)
    return 0


def _peer_groups(given: str) -> list[str]:
    groups = [name.strip() for name in given.split(",") if name.strip()]
    unknown = sorted(set(groups) - set(PEER_GROUPS))
    if unknown:
        raise SystemExit(f"unknown peers {unknown}: choose from {', '.join(PEER_GROUPS)}")
    return groups


def _ours_prediction(url: str) -> float:
    """Return our service's duration for RIDE: the answer every peer must give."""
    host, port, path = _split(f"{url}/predict")
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", path, json.dumps(RIDE), {"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return float(answer["duration"])


_PROCESSES: list[ManagedProcess] = []
_SERVER_PIDS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float:
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


def wrk_load(target: Target, concurrency: int, seconds: float) -> Point:
    """Post ``target``'s body with wrk at ``concurrency`` for ``seconds``; return the point."""
    script = Path(tempfile.gettempdir()) / f"bench-web-{os.getpid()}.lua"
    script.write_text(_WRK_LUA.format(body=target.body.decode()))
    threads = min(concurrency, 2)
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:g}s"]
    command += ["--latency", "-s", str(script), target.url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    script.unlink(missing_ok=True)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Point(
        target.name,
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


def _python_load_point(target: Target, concurrency: int, seconds: float) -> Point:
    latencies, errors, elapsed = _python_load(target.url, concurrency, seconds, target.body)
    latencies.sort()
    return Point(
        target.name,
        concurrency,
        len(latencies) / elapsed,
        _percentile(latencies, 50),
        _percentile(latencies, 99),
        errors,
        len(latencies) + errors,
    )


def _python_load(
    url: str, concurrency: int, seconds: float, body: bytes
) -> tuple[list[float], int, float]:
    """Post ``body`` from ``concurrency`` threads for ``seconds``; return latencies (ms), errors."""
    host, port, path = _split(url)
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
    described: list[str],
) -> None:
    load = os.getloadavg()
    print()
    print(
        f"web benchmark: POST to each server, client {client}, {seconds:g} s per point, "
        f"model {version}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end"
    )
    for line in described:
        print(line)
    print()
    width = max(9, *(len(p.server) for p in points))
    header = f"{'conc':>5} {'server':>{width}} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'errors':>7} {'server CPU us/req':>18}")
    for p in points:
        print(
            f"{p.concurrency:>5} {p.server:>{width}} {p.rps:>9.0f} {p.p50_ms:>8.2f} "
            f"{p.p99_ms:>8.2f} {p.errors:>7} {p.cpu_us:>18.0f}"
        )
    print()
    ratios: dict[int, dict[str, float]] = {}
    for concurrency in sorted({p.concurrency for p in points}):
        at = {p.server: p for p in points if p.concurrency == concurrency}
        ours = at["ours"]
        ratios[concurrency] = {
            name: ours.rps / other.rps if other.rps else float("inf")
            for name, other in at.items()
            if name != "ours"
        }
        shown = ", ".join(
            f"{name} {ratio:.2f}x (CPU {at[name].cpu_us / ours.cpu_us:.2f}x)"
            for name, ratio in ratios[concurrency].items()
        )
        print(f"concurrency {concurrency}: ours/other req/s, other/ours CPU per request: {shown}")
    p50, p99 = _percentile(batch, 50), _percentile(batch, 99)
    print(f"/predict/batch with {BATCH_RIDES} rides: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    v2_p50, v2_p99 = _percentile(v2, 50), _percentile(v2, 99)
    print(f"V2 infer with {BATCH_RIDES} rows: p50 {v2_p50:.1f} ms, p99 {v2_p99:.1f} ms")
    print()
    for goal, met in _goals(points, ratios, p50, v2_p50):
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


def _goals(
    points: list[Point], ratios: dict[int, dict[str, float]], batch_p50: float, v2_p50: float
) -> list[tuple[str, bool]]:
    """Return each goal the run can check and whether its figures meet it."""
    mine = {p.concurrency: p for p in points if p.server == "ours"}
    goals = []
    if 8 in ratios:
        at_8 = ratios[8]
        goals.append((f">= {GOAL_RATIO_AT_8:g}x course at c=8", at_8["course"] >= GOAL_RATIO_AT_8))
        peers = {name: ratio for name, ratio in at_8.items() if name in PEERS}
        if peers:
            worst = min(peers, key=peers.__getitem__)
            goals.append(
                (
                    f">= {GOAL_PEER_RATIO_AT_8:g}x every peer at c=8 (lowest: {worst} "
                    f"{peers[worst]:.2f}x)",
                    peers[worst] >= GOAL_PEER_RATIO_AT_8,
                )
            )
    if 64 in mine:
        goals.append(
            (f"p99 <= {GOAL_P99_AT_64_MS:g} ms at c=64", mine[64].p99_ms <= GOAL_P99_AT_64_MS)
        )
    for concurrency in (8, 64):
        if concurrency in mine:
            cpu = mine[concurrency].cpu_us
            goals.append(
                (
                    f"CPU per /predict <= {GOAL_CPU_US:g} us at c={concurrency} ({cpu:.0f} us)",
                    cpu <= GOAL_CPU_US,
                )
            )
    goals.append(("zero errors (ours)", all(p.errors == 0 for p in mine.values())))
    goals.append(
        (f"batch of {BATCH_RIDES} p50 <= {GOAL_BATCH_MS:g} ms", batch_p50 <= GOAL_BATCH_MS)
    )
    goals.append((f"V2 infer of {BATCH_RIDES} p50 <= {GOAL_V2_MS:g} ms", v2_p50 <= GOAL_V2_MS))
    return goals


if __name__ == "__main__":
    sys.exit(main())
