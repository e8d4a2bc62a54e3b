"""What the local runners share: the ``deploy`` command of this environment, clean stops."""

from __future__ import annotations

import sys
from pathlib import Path

from deploy_modes.compare.memory import PeakMemory
from deploy_modes.launch.processes import ManagedProcess

__all__ = ["READY_TIMEOUT", "deploy_args", "stopped"]

READY_TIMEOUT = 90.0


def deploy_args() -> list[str]:
    """Return the argv prefix of the ``deploy`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "deploy"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from deploy_modes.cli.main import main; main()"]


def stopped(process: ManagedProcess | None, memory: PeakMemory | None) -> int:
    """Stop the sampler and the process (SIGTERM, then SIGKILL); return the RSS peak."""
    peak = memory.stop() if memory is not None else 0
    if process is not None and process.poll() is None:
        process.stop(timeout=20)
    if process is not None:
        process.kill()  # the whole process group: no orphaned worker survives its master
    return peak
