"""What every lane counts, under one lock, and how it becomes a :class:`LaneState`."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deploy_modes.classroom.state import LaneState, Series
from deploy_modes.classroom.window import Window

__all__ = ["Answer", "Tally"]


@dataclass(frozen=True)
class Answer:
    """One prediction a mode gave: for which ride, what, by which model version, when."""

    ride_id: int
    duration: float
    version: str
    seen: float  # seconds since the room started


@dataclass
class Tally:
    """A lane's counters and rolling window; every method takes the lock."""

    mode: str
    title: str
    backlog_label: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    rides_in: int = 0
    predictions_out: int = 0
    duplicates: int = 0
    errors: int = 0
    last_error: str = ""
    checked: int = 0
    mismatches: int = 0
    last_mismatch: str = ""
    version: str | None = None
    versions: Counter[str] = field(default_factory=Counter)
    window: Window = field(default_factory=Window)
    answered: set[int] = field(default_factory=set)

    def ride_in(self, count: int = 1) -> None:
        """Count rides handed to this mode."""
        with self.lock:
            self.rides_in += count

    def answer(self, answer: Answer, sent: float) -> bool:
        """Count one prediction (a repeat for a ride is a duplicate); return whether it is new."""
        with self.lock:
            if answer.ride_id in self.answered:
                self.duplicates += 1
                return False
            self.answered.add(answer.ride_id)
            self.predictions_out += 1
            self.version = answer.version
            self.versions[answer.version] += 1
            self.window.add(answer.seen, max(0.0, answer.seen - sent))
            return True

    def repeat(self, ride_id: int) -> None:
        """Count a second answer for a ride; an answer for a ride never sent is an error."""
        with self.lock:
            if ride_id in self.answered:
                self.duplicates += 1
            else:
                self.errors += 1
                self.last_error = f"a prediction for ride {ride_id}, which was never sent"

    def error(self, message: str, count: int = 1) -> None:
        """Count a failure and keep its message for the lane's status line."""
        with self.lock:
            self.errors += count
            self.last_error = message

    def checked_answers(self, checked: int, mismatched: list[str]) -> None:
        """Count predictions compared with the reference; any mismatch is kept and shown."""
        with self.lock:
            self.checked += checked
            self.mismatches += len(mismatched)
            if mismatched:
                self.last_mismatch = mismatched[-1]

    def state(
        self,
        now: float,
        backlog: int,
        status: tuple[str, str],
        memory: tuple[int, int],
        detail: str,
        backlog_detail: dict[str, int] | None = None,
    ) -> LaneState:
        """Return the lane as the page shows it; red whenever a prediction mismatched."""
        with self.lock:
            self.window.backlog(now, backlog)
            p50, p99 = self.window.latency_ms(now)
            t, throughput, p99s, backlogs = self.window.series(now)
            code, text = status
            if self.mismatches:
                code = "red"
                text = (
                    f"{self.mismatches} predictions differ from the model's own: "
                    f"{self.last_mismatch}"
                )
            values: dict[str, Any] = {
                "mode": self.mode,
                "title": self.title,
                "status": code,
                "status_text": text,
                "rides_in": self.rides_in,
                "predictions_out": self.predictions_out,
                "throughput": self.window.throughput(now),
                "p50_ms": p50,
                "p99_ms": p99,
                "backlog": backlog,
                "backlog_label": self.backlog_label,
                "backlog_detail": backlog_detail or {},
                "errors": self.errors,
                "checked": self.checked,
                "mismatches": self.mismatches,
                "version": self.version,
                "versions": dict(self.versions),
                "memory_mb": round(memory[0] / 2**20, 1),
                "processes": memory[1],
                "detail": detail,
                "series": Series(t=t, throughput=throughput, p99_ms=p99s, backlog=backlogs),
            }
        return LaneState(**values)
