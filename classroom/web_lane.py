"""The web lane: ``deploy web`` (gunicorn) answering ``POST /predict``, one ride per request."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.lane import Answer, Tally
from deploy_modes.classroom.processes import (
    children,
    deploy,
    deploy_command,
    memory_of,
    stop_all,
)
from deploy_modes.classroom.rides import Ride
from deploy_modes.classroom.state import LaneState
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http

__all__ = ["CLIENTS", "WebLane"]

CLIENTS = 4  # concurrent clients: the web service is 1-to-1, each waits for its answer
_TIMEOUT = 30.0  # seconds a client waits for its answer (a loaded machine, a reload)
_RELOAD_TIMEOUT = 180.0


class WebLane:
    """Start gunicorn through ``deploy web``; client threads post every ride and time it."""

    # How this lane scales and rolls a model out, in the scenarios' words.
    ADD_WORKER = "one more gunicorn worker (SIGTTIN to the master)"
    SPREAD = "the kernel spreads new connections over them"
    RELOAD = (
        "loaded and proved it in gunicorn's master, forked new workers and retired the old ones"
    )

    def __init__(
        self, model: str, workers: int, log_dir: Path, clock: Callable[[], float], checker: Checker
    ) -> None:
        self.model = model
        self.workers = workers
        self.log_dir = log_dir
        self.clock = clock
        self.checker = checker
        self.port = free_port()
        self.tally = Tally("web", "Web service", "requests waiting for an answer")
        self.process: ManagedProcess | None = None
        self._queue: queue.Queue[Ride] = queue.Queue()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.failed_requests = 0
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server, wait until it is ready, start the clients."""
        args = ["web", "--runtime", "local", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--model", self.model, "--workers", str(self.workers)]
        self.process = deploy("deploy web", args, {}, self.log_dir / "web.log")
        wait_http(f"{self.url}/ready", timeout=120, process=self.process)
        self.start_clients()

    def start_clients(self) -> None:
        """Start the client threads that post the rides."""
        for k in range(CLIENTS):
            thread = threading.Thread(target=self._client, name=f"web-client-{k}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, rides: list[Ride]) -> None:
        """Queue rides for the clients."""
        self.tally.ride_in(len(rides))
        for ride in rides:
            self._queue.put(ride)

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                ride = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._in_flight += 1
            # A new connection per ride, as the course's client (requests.post) and curl do:
            # a kept-alive one is closed by a worker that retires between two requests (a
            # reload), and the request sent on it fails though the service never refused it.
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=_TIMEOUT)
            try:
                body = json.dumps(ride.payload())
                connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
                answer = json.loads(data)
                got = Answer(
                    ride.ride_id,
                    float(answer["duration"]),
                    str(answer["model_version"]),
                    self.clock(),
                )
                if self.tally.answer(got, ride.sent):
                    self.checker.submit(self.tally, ride, got)
            except Exception as exc:  # a failed request is lost: the web client sees the error
                self.failed_requests += 1
                self.tally.error(f"ride {ride.ride_id}: {type(exc).__name__}: {exc}")
            finally:
                connection.close()
                with self._lock:
                    self._in_flight -= 1

    @property
    def backlog(self) -> int:
        """Return the rides queued or waiting for their answer."""
        with self._lock:
            return self._queue.qsize() + self._in_flight

    def master_pid(self) -> int | None:
        """Return the gunicorn master's pid (the child of ``deploy web``)."""
        if self.process is None or self.process.poll() is not None:
            return None
        found = children(self.process.pid)
        return found[0] if found else None

    def worker_pids(self) -> list[int]:
        """Return the gunicorn workers' pids."""
        master = self.master_pid()
        return children(master) if master else []

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one gunicorn worker: its master forks a replacement."""
        os.kill(pid, signal.SIGKILL)

    def reload(self, location: str) -> tuple[bool, str]:
        """Roll ``location`` out with ``deploy web reload``; return (done, what it said)."""
        done = subprocess.run(
            [*deploy_command(), "web", "reload", "--port", str(self.port), "--model", location],
            capture_output=True,
            text=True,
            check=False,
            timeout=_RELOAD_TIMEOUT,
        )
        said = (done.stdout + done.stderr).strip()
        return done.returncode == 0, said[-300:]

    def add_worker(self) -> None:
        """Ask the gunicorn master for one more worker (its SIGTTIN)."""
        master = self.master_pid()
        if master is None:
            raise RuntimeError("the web server is not running")
        os.kill(master, signal.SIGTTIN)

    def running(self) -> bool:
        """Return whether the server runs."""
        return self.process is not None and self.process.poll() is None

    def memory(self) -> tuple[int, int]:
        """Return the server's summed RSS and process count."""
        return memory_of([self.process] if self.process else [])

    def detail(self, workers: int) -> str:
        """Return the lane's one-line description for the page."""
        return f"{workers} gunicorn workers, {CLIENTS} clients, port {self.port}"

    def state(self, now: float) -> LaneState:
        """Return the lane for the page."""
        workers = len(self.worker_pids())
        backlog = self.backlog
        if not self.running():
            status = ("down", "the server is not running")
        elif backlog > max(20, 2 * CLIENTS):
            status = ("busy", f"{backlog} rides wait: {CLIENTS} clients, each waits for its answer")
        else:
            status = ("ok", "every ride is answered while its client waits")
        return self.tally.state(now, backlog, status, self.memory(), self.detail(workers))

    def close(self) -> None:
        """Stop the clients and the server."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=_TIMEOUT + 1)
        stop_all([self.process] if self.process else [])
