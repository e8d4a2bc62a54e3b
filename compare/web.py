"""The web mode measured: gunicorn on a free port, every ride POSTed by concurrent clients."""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.compare.local import READY_TIMEOUT, stopped
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.result import Advance, ModeResult, ProgressFactory, Say
from deploy_modes.compare.rides import RideSet
from deploy_modes.core.artifact import Trust
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.launch.web import GUNICORN_ARGS

__all__ = ["REQUEST_TIMEOUT", "LocalWeb", "WebClients"]

REQUEST_TIMEOUT = 30.0


@dataclass
class LocalWeb:
    """Start gunicorn on a free port and POST every ride with ``concurrency`` clients."""

    model: str
    log_dir: Path
    say: Say
    progress: ProgressFactory
    concurrency: int = 8
    workers: int | None = None
    mode: str = "web"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the child

    def run(self, rides: RideSet) -> ModeResult:
        """Serve, send, measure; gunicorn and its workers are stopped whatever happens."""
        port = free_port()
        metrics_dir = tempfile.mkdtemp(prefix="deploy-compare-metrics-")
        env = {
            "DEPLOY_MODEL_LOCATION": self.model,
            "DEPLOY_WEB_HOST": "127.0.0.1",
            "DEPLOY_WEB_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "PYTHONUNBUFFERED": "1",
            **(self.trust.env() if self.trust else {}),
        }
        if self.workers is not None:
            env["DEPLOY_WEB_WORKERS"] = str(self.workers)
        log = self.log_dir / "web.log"
        log.unlink(missing_ok=True)
        self.say(f"web: starting gunicorn on 127.0.0.1:{port}")
        process: ManagedProcess | None = None
        memory: PeakMemory | None = None
        try:
            started = time.perf_counter()
            process = ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log)
            memory = PeakMemory(process.pid)
            wait_http(f"http://127.0.0.1:{port}/ready", timeout=READY_TIMEOUT, process=process)
            startup = time.perf_counter() - started
            clients = WebClients(port, rides, self.concurrency)
            with self.progress(f"web: POST /predict x{len(rides):,}", len(rides)) as advance:
                wall = clients.run(advance)
            memory.sample()
            worker_count = memory.processes - 1  # the master's children
        finally:
            peak = stopped(process, memory)
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return clients.result(
            startup, wall, peak, concurrency=self.concurrency, workers=worker_count, port=port
        )


class WebClients:
    """``concurrency`` threads, each POSTing its share of the rides one request at a time."""

    def __init__(self, port: int, rides: RideSet, concurrency: int) -> None:
        self.port = port
        self.rides = rides
        self.concurrency = max(1, min(concurrency, len(rides)))
        self.predictions: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def result(self, startup: float, wall: float, peak: int, **details: Any) -> ModeResult:
        """Return the web mode's result from what the clients saw."""
        return ModeResult(
            mode="web",
            rides=len(self.rides),
            startup_s=startup,
            wall_s=wall,
            latencies_s=np.asarray(self.latencies, dtype="float64"),
            peak_rss_bytes=peak,
            predictions=self.predictions,
            errors=self.errors[:20],
            details=details,
        )

    def run(self, advance: Advance) -> float:
        """Send every ride; return the wall time from the first request to the last answer."""
        threads = [
            threading.Thread(target=self._client, args=(k,), daemon=True)
            for k in range(self.concurrency)
        ]
        started = time.perf_counter()
        reported = 0
        try:
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.05)
                with self._lock:
                    done = self.done
                advance(done - reported)
                reported = done
        finally:
            self._stop.set()  # Ctrl-C: the clients stop after their request in flight
            for thread in threads:
                if thread.ident is not None:  # Ctrl-C may land before every thread started
                    thread.join(REQUEST_TIMEOUT + 5)
        wall = time.perf_counter() - started
        advance(self.done - reported)
        return wall

    def _client(self, k: int) -> None:
        for i in range(k, len(self.rides), self.concurrency):
            if self._stop.is_set():
                return
            body = json.dumps(self.rides.payload(i)).encode()
            sent = time.perf_counter()
            try:
                status, answer = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._record(i, None, f"{self.rides.ride_ids[i]}: {type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - sent
            try:
                duration = float(json.loads(answer)["duration"]) if status == 200 else None
            except (ValueError, KeyError, TypeError):
                duration = None
            if duration is None:
                text = answer[:200].decode(errors="replace")
                self._record(i, None, f"{self.rides.ride_ids[i]}: HTTP {status}: {text}")
            else:
                self._record(i, duration, None, took)

    def _post(self, body: bytes) -> tuple[int, bytes]:
        # One connection per request: gunicorn's sync workers close it after each answer.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _record(
        self, i: int, duration: float | None, error: str | None, took: float | None = None
    ) -> None:
        with self._lock:
            self.done += 1
            if duration is not None:
                self.predictions[self.rides.ride_ids[i]] = duration
            if took is not None:
                self.latencies.append(took)
            if error is not None:
                self.errors.append(error)
