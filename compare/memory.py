"""Peak memory of a mode: the summed RSS of its process trees, sampled in a thread."""

from __future__ import annotations

import contextlib
import threading

__all__ = ["MEMORY_EVERY", "PeakMemory", "tree_rss"]

MEMORY_EVERY = 0.02  # seconds between RSS samples (the batch job lives ~2 s)


def tree_rss(pid: int) -> tuple[int, int]:
    """Return the summed RSS of a process and all its descendants, and how many they are."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:  # the root exited
        return 0, 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total, len(procs)


class PeakMemory:
    """Sample the RSS of a process and all its children in a thread; keep the peak sum.

    Subclasses sample other process trees by overriding :meth:`root_pids`.
    """

    every = MEMORY_EVERY

    def __init__(self, pid: int = 0, name: str = "") -> None:
        self.pid = pid
        self.peak = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{name or pid}")
        self._thread.start()

    def root_pids(self) -> list[int]:
        """Return the roots of the process trees to sum."""
        return [self.pid]

    def sample(self) -> int:
        """Return the RSS sum now (and update the peak)."""
        total = count = 0
        for pid in self.root_pids():
            rss, procs = tree_rss(pid)
            total += rss
            count += procs
        self.peak = max(self.peak, total)
        self.processes = max(self.processes, count)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def stop(self) -> int:
        """Stop sampling and return the peak in bytes."""
        self._stop.set()
        self._thread.join(10)
        return self.peak
