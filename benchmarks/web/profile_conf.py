"""gunicorn config for ``profile_web.py``: ours, with cProfile running in every worker.

Everything is the service's own config (``deploy_modes.web.gunicorn_conf``); the two hooks
added here start a profiler in each forked worker and dump it when the worker exits, to
``$BENCH_PROFILE_DIR/worker-<pid>.prof``.
"""

from __future__ import annotations

import cProfile
import os
from pathlib import Path
from typing import Any

from deploy_modes.web.gunicorn_conf import *  # noqa: F403 (the service's settings, unchanged)

_PROFILES: dict[int, cProfile.Profile] = {}


def post_fork(server: Any, worker: Any) -> None:
    """Start profiling this worker (its event loop runs in this, the main, thread)."""
    profile = cProfile.Profile()
    _PROFILES[os.getpid()] = profile
    profile.enable()


def worker_exit(server: Any, worker: Any) -> None:
    """Stop profiling and write this worker's statistics."""
    profile = _PROFILES.pop(os.getpid(), None)
    if profile is not None:
        profile.disable()
        folder = Path(os.environ["BENCH_PROFILE_DIR"])
        profile.dump_stats(str(folder / f"worker-{os.getpid()}.prof"))
