"""The room's child processes: ``deploy`` subcommands, their trees, their memory."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from deploy_modes.compare.local import deploy_args
from deploy_modes.compare.memory import tree_rss
from deploy_modes.launch.processes import ManagedProcess

__all__ = ["children", "deploy", "memory_of", "stop_all"]


def deploy(name: str, args: list[str], env: dict[str, str], log: Path) -> ManagedProcess:
    """Start ``deploy ARGS`` in its own process group, its output in ``log``."""
    return ManagedProcess(
        name, [*deploy_args(), *args], env={"PYTHONUNBUFFERED": "1", **env}, log_path=log
    )


def memory_of(processes: list[ManagedProcess]) -> tuple[int, int]:
    """Return the summed RSS and process count of the live ``processes`` and their children."""
    total = count = 0
    for process in processes:
        if process.poll() is None:
            rss, n = tree_rss(process.pid)
            total, count = total + rss, count + n
    return total, count


def children(pid: int) -> list[int]:
    """Return the pids of the direct children of ``pid`` (none if it exited)."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def stop_all(processes: list[ManagedProcess], timeout: float = 20.0) -> None:
    """Stop every process (SIGTERM, then SIGKILL of its group)."""
    for process in processes:
        with contextlib.suppress(Exception):
            if process.poll() is None:
                process.stop(timeout=timeout, sig=signal.SIGTERM)
            process.kill()


def deploy_command() -> list[str]:
    """Return the argv prefix of this environment's ``deploy`` command."""
    return deploy_args()
