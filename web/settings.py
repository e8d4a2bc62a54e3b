"""Web settings: bind address, gunicorn workers and request limits (env prefix ``DEPLOY_WEB_``)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy_modes.core.schema import MAX_BATCH_RIDES
from deploy_modes.core.settings import load_settings  # re-exported: one definition

__all__ = [
    "DEFAULT_PORT",
    "MAX_BATCH_RIDES",
    "MAX_BODY_BYTES",
    "MULTIPROC_ENV",
    "WebSettings",
    "default_workers",
    "load_settings",
]

DEFAULT_PORT = 9696  # the course's port
MAX_BODY_BYTES = 1024 * 1024
# prometheus-client's own variable (not ours): it picks its storage from it when imported, so
# it is named here, where nothing imports prometheus-client, for the gunicorn config to set.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def default_workers() -> int:
    """Return one worker per usable core: predictions are CPU-bound, more only contend."""
    try:
        return len(os.sched_getaffinity(0)) or 1  # honours a container's cpuset
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class WebSettings(BaseSettings):
    """Everything the web service and its gunicorn config read from the environment."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_WEB_", extra="ignore")

    host: str = "127.0.0.1"
    """Interface to bind; loopback locally, the container sets ``0.0.0.0``."""

    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    """TCP port to listen on (the course's 9696)."""

    workers: int = Field(default_factory=default_workers, ge=1, le=64)
    """gunicorn worker processes; predictions are CPU-bound, so one per core."""

    worker_class: Literal["asgi", "gthread", "sync"] = "asgi"
    """gunicorn worker class. ``asgi``: one asyncio (uvloop) loop per worker parses HTTP, keeps
    connections alive and runs the Flask app inline through ``web/bridge.py`` (about 2x the
    requests/s of ``gthread`` and a third of its p99 in benchmarks/web). ``gthread``: a thread
    pool per worker. ``sync``: one request per connection."""

    threads: int = Field(4, ge=1, le=64)
    """Threads per ``gthread`` worker (the other classes use one): they overlap network waits;
    the GIL serialises the rest."""

    timeout: int = Field(30, ge=1)
    """Seconds a worker may spend on one request before the master restarts it."""

    graceful_timeout: int = Field(20, ge=1)
    """Seconds workers get to finish in-flight requests after SIGTERM."""

    keepalive: int = Field(5, ge=0)
    """Seconds an idle keep-alive connection stays open between requests (``asgi``,
    ``gthread``; ``sync`` closes after each answer). 0 closes after each answer."""

    header_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds a client gets to send a request's headers; a connection that has sent none, or
    half, is closed after it (no answer: there is no request to answer)."""

    body_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds the body gets once the headers are in (``asgi``: the whole body; ``gthread``,
    ``sync``: each read). A stalled body gets a JSON 408 and the connection is closed."""

    max_connections: int = Field(100, ge=1, le=100_000)
    """Open client connections per worker. ``asgi`` and ``gthread`` answer one over the cap a
    JSON 503 with ``Retry-After: 1`` and close it (counted in
    ``deploy_web_refused_connections_total``); ``sync`` serves one connection at a time and has
    no cap. It also bounds memory: a worker buffers at most this many bodies of
    ``max_body_bytes`` (100 MiB by default)."""

    backlog: int = Field(2048, ge=1)
    """Pending connections the kernel queues while every worker is busy."""

    max_batch_rides: int = Field(MAX_BATCH_RIDES, ge=1)
    """Most rides one ``POST /predict/batch`` may carry."""

    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    """Largest request body accepted; bigger bodies get 413 before they are parsed."""

    access_log: bool = True
    """Write one JSON line per request to stdout."""

    log_level: str = "info"
    """gunicorn's error-log level."""

    reload_file: str = ""
    """Where ``deploy web reload`` leaves the next model's location and trust before sending
    SIGHUP (``deploy web`` sets it next to its process record). Empty, or no file there: a
    SIGHUP re-reads the location served now, with the trust it was loaded with."""

    parent_pid: int | None = Field(None, ge=1)
    """Stop (gracefully, as on SIGTERM) when this process ends, even by SIGKILL: ``deploy web``
    sets its own pid, so its gunicorn never outlives it holding the port. Linux only."""
