"""Rolling measurements of one lane: throughput, latency percentiles, a per-second history."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["HISTORY_SECONDS", "Window", "percentile"]

HISTORY_SECONDS = 90  # the charts' span; older seconds are dropped


def percentile(values: list[float], q: float) -> float | None:
    """Return the ``q`` quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class Window:
    """Per-second buckets of prediction latencies, and the backlog seen each second.

    Times are seconds since the room started (the caller's clock), so a test can feed
    any sequence of times and read exact answers.
    """

    def __init__(self, history: int = HISTORY_SECONDS) -> None:
        self.history = history
        self._latencies: deque[tuple[int, list[float]]] = deque()
        self._backlog: dict[int, int] = {}

    def add(self, now: float, latency_s: float) -> None:
        """Record one prediction seen at ``now`` that took ``latency_s`` from ride to answer."""
        second = int(now)
        if not self._latencies or self._latencies[-1][0] != second:
            self._latencies.append((second, []))
        self._latencies[-1][1].append(latency_s)
        self._trim(second)

    def backlog(self, now: float, value: int) -> None:
        """Record the backlog seen at ``now`` (the last value of a second wins)."""
        self._backlog[int(now)] = value
        self._trim(int(now))

    def _trim(self, second: int) -> None:
        while self._latencies and self._latencies[0][0] <= second - self.history:
            self._latencies.popleft()
        for old in [s for s in self._backlog if s <= second - self.history]:
            del self._backlog[old]

    def _recent(self, now: float, seconds: int) -> list[float]:
        """Latencies of the last ``seconds`` whole seconds before the current one."""
        current = int(now)
        found: list[float] = []
        for second, values in self._latencies:
            if current - seconds <= second < current:
                found.extend(values)
        return found

    def throughput(self, now: float, seconds: int = 5) -> float:
        """Return predictions per second over the last ``seconds`` complete seconds."""
        return len(self._recent(now, seconds)) / seconds

    def latency_ms(self, now: float, seconds: int = 10) -> tuple[float | None, float | None]:
        """Return (p50, p99) in milliseconds over the last ``seconds``; None when idle."""
        values = self._recent(now, seconds)
        p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
        return (
            None if p50 is None else p50 * 1000.0,
            None if p99 is None else p99 * 1000.0,
        )

    def series(
        self, now: float, seconds: int = 60
    ) -> tuple[list[float], list[float], list[float | None], list[int]]:
        """Return (t, throughput, p99 ms, backlog) for each complete second of the span."""
        current = int(now)
        by_second = dict(self._latencies)
        t: list[float] = []
        throughput: list[float] = []
        p99: list[float | None] = []
        backlog: list[int] = []
        last_backlog = 0
        for second in range(max(0, current - seconds), current):
            values = by_second.get(second, [])
            t.append(float(second))
            throughput.append(float(len(values)))
            worst = percentile(values, 0.99)
            p99.append(None if worst is None else round(worst * 1000.0, 2))
            last_backlog = self._backlog.get(second, last_backlog)
            backlog.append(last_backlog)
        return t, throughput, p99, backlog
