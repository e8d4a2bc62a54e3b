"""Profile where a worker's CPU time goes while it serves ``POST /predict`` under wrk.

Run: ``.venv/bin/python benchmarks/web/profile_web.py`` (about 30 s). It trains the bench's demo
model, starts our service with one ``asgi`` worker and cProfile on (``profile_conf.py``), loads
it with wrk at concurrency 8, stops it and prints the worker's time per request, by package
and by function. cProfile slows Python calls (not C code inside them), so read the shares, not
the absolute figures; the CPU per request without the profiler is bench_web.py's figure.
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench_web import HERE, RIDE, Target, cpu_seconds, wrk_load

from deploy_modes.core.demo import ensure_model
from deploy_modes.core.settings import CoreSettings
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http

_MIN_SHARE = 0.005  # parts below half a percent are summed into one line
# Where a function's file lives says which part of the request it is.
_PARTS = (
    ("deploy_modes/web/", "ours: web/ (bridge, fast path, access line, metrics)"),
    ("deploy_modes/core/", "ours: core/ (validation models, scoring)"),
    ("gunicorn/", "gunicorn asgi worker (HTTP parsing, protocol)"),
    ("asyncio/", "asyncio (event loop, transports)"),
    ("uvloop", "uvloop"),
    ("prometheus_client/", "prometheus-client"),
    ("pydantic", "pydantic"),
    ("logging/", "logging"),
    ("json/", "json"),
)


def main(argv: list[str] | None = None) -> int:
    """Profile one worker under load and print where its time went; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="profile-web-") as tmp:
        work = Path(tmp)
        settings = CoreSettings(
            model_location=str(work / "model"), data_dir=work / "data", demo_rows=20_000
        )
        location = ensure_model(settings, lambda msg: None)
        port = free_port()
        env = {
            "DEPLOY_MODEL_LOCATION": location,
            "DEPLOY_WEB_PORT": str(port),
            "DEPLOY_WEB_WORKERS": "1",
            "BENCH_PROFILE_DIR": str(work),
            "PYTHONPATH": str(HERE),
        }
        command = ["-m", "gunicorn", "-c", "python:profile_conf"]
        process = ManagedProcess.python("deploy web (profiled)", command, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/ready", timeout=60, process=process)
            target = Target("ours", f"{url}/predict", json.dumps(RIDE).encode(), process.pid)
            wrk_load(target, args.concurrency, 1.0)  # warm up
            before = cpu_seconds(process.pid)
            point = wrk_load(target, args.concurrency, args.duration)
            spent = cpu_seconds(process.pid) - before
        finally:
            process.stop()
        profiles = [str(path) for path in work.glob("worker-*.prof")]
        if not profiles:
            raise SystemExit("no profile written: did the worker exit cleanly?")
        stats = pstats.Stats(*profiles)
    _report(stats, point.requests, spent, point.rps, args.top)
    return 0


def _report(stats: pstats.Stats, requests: int, spent: float, rps: float, top: int) -> None:
    raw = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(entry[2] for entry in raw.values())
    # The warm-up's requests are in the profile too: divide by all of them.
    print(
        f"profiled worker: {requests:,} requests at {rps:,.0f} req/s; worker and master CPU "
        f"{spent / max(requests, 1) * 1e6:.0f} us per request under cProfile; profile total "
        f"{total:.2f} s (own time of every function, warm-up included)"
    )
    parts: dict[str, float] = defaultdict(float)
    for (file, _line, name), entry in raw.items():
        parts[_part(file, name)] += entry[2]
    print("\nown time by part:")
    shown = sorted(parts.items(), key=lambda item: -item[1])
    for part, seconds in [item for item in shown if item[1] >= _MIN_SHARE * total]:
        print(f"  {seconds / total:6.1%}  {part}")
    rest = sum(seconds for _part_name, seconds in shown if seconds < _MIN_SHARE * total)
    print(f"  {rest / total:6.1%}  everything under {_MIN_SHARE:.1%} each")
    print(f"\ntop {top} functions by own time:")
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, name), entry in ranked:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"  {entry[2] / total:6.1%}  {entry[1]:>9,} calls  {name}  ({where})")


def _part(file: str, name: str) -> str:
    for marker, part in _PARTS:
        if marker in file:
            return part
    if file == "~":  # uvloop's own loop and socket calls show up here, as its callers' C calls
        return "C functions (uvloop's run loop, syscalls, pydantic-core, numpy...)"
    return "other Python: " + "/".join(Path(file).parts[-2:])


if __name__ == "__main__":
    sys.exit(main())
