"""Every prediction shown is compared with the model's own ``predict`` (core.reference)."""

from __future__ import annotations

import threading
from collections import defaultdict

from deploy_modes.classroom.lane import Answer, Tally
from deploy_modes.classroom.rides import Ride
from deploy_modes.core.artifact import Trust
from deploy_modes.core.proof import TOLERANCE
from deploy_modes.core.reference import Reference

__all__ = ["Checker"]

_INTERVAL = 0.5  # seconds between two checks: the page turns red within about a second


class Checker:
    """Queue (lane, ride, answer) triples; a thread scores them with the reference, by version.

    ``models`` maps every version the room deployed to its location; an answer by any other
    version is a mismatch (a model nobody deployed answered).
    """

    def __init__(self, models: dict[str, str], trust: Trust) -> None:
        self.models = models
        self.trust = trust
        self._pending: list[tuple[Tally, Ride, Answer]] = []
        self._lock = threading.Lock()
        self._references: dict[str, Reference] = {}
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reference-check", daemon=True)

    def start(self) -> None:
        """Start checking in the background."""
        self._thread.start()

    def submit(self, tally: Tally, ride: Ride, answer: Answer) -> None:
        """Queue one answer for the check."""
        with self._lock:
            self._pending.append((tally, ride, answer))

    def _run(self) -> None:
        while not self.stop.wait(_INTERVAL):
            self.check_now()

    def check_now(self) -> None:
        """Check everything queued so far."""
        with self._lock:
            pending, self._pending = self._pending, []
        groups: dict[tuple[int, str], list[tuple[Tally, Ride, Answer]]] = defaultdict(list)
        for item in pending:
            groups[(id(item[0]), item[2].version)].append(item)
        for (_, version), items in groups.items():
            tally = items[0][0]
            location = self.models.get(version)
            if location is None:
                tally.checked_answers(
                    len(items),
                    [f"version {version} answered, and this room never deployed it"] * len(items),
                )
                continue
            reference = self._references.get(version)
            if reference is None:
                reference = self._references[version] = Reference(location, self.trust)
            truth = reference.durations(
                [ride.pu for _, ride, _ in items],
                [ride.do for _, ride, _ in items],
                [ride.distance for _, ride, _ in items],
            )
            wrong = [
                f"ride {ride.ride_id}: {answer.duration:.4f} min, the model says {expected:.4f}"
                for (_, ride, answer), expected in zip(items, truth, strict=True)
                if not abs(answer.duration - float(expected)) <= TOLERANCE
            ]
            tally.checked_answers(len(items), wrong)

    def close(self) -> None:
        """Stop the thread after a last check."""
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.check_now()
