"""Prometheus metrics of the web service, correct under several gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn config sets a fresh one per server start)
prometheus-client writes every value to a per-process file in that directory and ``/metrics``
sums the files of all workers; without it (tests, one process) values live in memory.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from deploy_modes.web.settings import MULTIPROC_ENV

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "MULTIPROC_ENV", "WebMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A prediction takes well under a millisecond; the low buckets are where the signal is.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WebMetrics:
    """Request count and latency by endpoint and status, predictions served, model version.

    Also the connections a worker refused over its cap: gunicorn's worker classes count
    those (web/workers.py), before any request reaches the app.
    """

    def __init__(self, model_name: str, model_version: str, multiproc_dir: str | None = None):
        self.multiproc_dir = multiproc_dir if multiproc_dir is not None else _multiproc_dir()
        # A registry per app: several apps (tests) never collide on metric names.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deploy_web_requests",
            "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deploy_web_request_duration_seconds",
            "Time spent answering a request inside the app, by endpoint and status.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "deploy_web_predictions",
            "Ride durations predicted, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.invalid_rides = Counter(
            "deploy_web_invalid_rides",
            "Rides refused by validation, by endpoint and field.",
            ["endpoint", "field"],
            registry=self.registry,
        )
        self.unknown_rides = Counter(
            "deploy_web_unknown_rides",
            "Rides with no feature the model knows, answered with its intercept (see the log).",
            registry=self.registry,
        )
        self.refused_connections = Counter(
            "deploy_web_refused_connections",
            "Connections answered 503 and closed because the worker was at its connection cap.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "deploy_web_model_info",
            "The model being served (always 1), labelled with its name and version.",
            ["name", "version"],
            registry=self.registry,
            multiprocess_mode="max",  # the master sets it before forking; workers inherit it
        )
        self.model_info.labels(model_name, model_version).set(1)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a key: do it once per kind
            code = str(status)
            children = (
                self.requests.labels(endpoint, method, code),
                self.latency.labels(endpoint, code),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every worker's metrics."""
        if self.multiproc_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _multiproc_dir() -> str | None:
    # prometheus-client picks its storage from this variable when first imported, so the
    # variable (not a setting of ours) is the single source of truth.
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None
