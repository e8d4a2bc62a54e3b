"""A client that keeps posting rides while a test changes the server under it.

Shared by the hot-reload tests (one gunicorn) and the scaled compose stack's (replicas behind
nginx); importable from any test module because pytest puts ``tests/`` (the top conftest's
folder) on ``sys.path``. Each request goes on a new connection (as curl does): the kernel, or
the balancer, hands each one to whichever worker or replica takes it, the strictest check that
answers never switch back to an old version.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["PREDICT", "RIDE", "Answer", "Load", "load_on"]

RIDE = {"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}  # the course's
PREDICT = ("/predict", json.dumps(RIDE))
_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Answer:
    """One 200 answer: when its request was sent, the version that computed it, who answered."""

    sent: float  # monotonic time the request was sent
    version: str
    upstream: str = ""  # the balancer's X-Upstream: the address that answered (the last tried)
    tried: int = 0  # how many replicas the balancer tried (0: no balancer)


@dataclass
class Load:
    """One client thread sending ``requests`` (path, JSON body) in turn, back to back."""

    host: str
    port: int
    requests: Sequence[tuple[str, str]] = (PREDICT,)
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Send until ``stop`` is set, recording each answer or failure."""
        sent_count = 0
        while not self.stop.is_set():
            path, body = self.requests[sent_count % len(self.requests)]
            sent_count += 1
            sent = time.monotonic()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.request("POST", path, body, _HEADERS)
                response = conn.getresponse()
                data = response.read()
                upstream = response.getheader("X-Upstream", "")
                if response.status == 200:
                    tried = [part.strip() for part in upstream.split(",")] if upstream else []
                    version = json.loads(data)["model_version"]
                    last = tried[-1] if tried else ""
                    self.answers.append(Answer(sent, version, last, len(tried)))
                else:
                    via = f" via {upstream}" if upstream else ""
                    self.failures.append(f"{path}: {response.status}{via} {data[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{path}: {exc!r}")
            finally:
                conn.close()

    def since(self, moment: float) -> list[Answer]:
        """Return the answers to requests sent after ``moment``."""
        return [a for a in list(self.answers) if a.sent > moment]

    def seen(self) -> list[str]:
        """Return the versions answered so far, in order."""
        return [a.version for a in list(self.answers)]

    def wait_for(self, version: str, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` answers came from ``version``."""
        deadline = time.monotonic() + timeout
        while self.seen().count(version) < count:
            assert time.monotonic() < deadline, f"only {self.seen().count(version)} from {version}"
            time.sleep(0.05)


@contextmanager
def load_on(
    host: str, port: int, requests: Sequence[tuple[str, str]] = (PREDICT,)
) -> Iterator[Load]:
    """Keep a client sending to ``host:port`` while the block runs."""
    load = Load(host, port, requests)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        thread.join(60)
