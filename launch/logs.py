"""The log files of the local processes ``deploy`` starts, which ``deploy logs MODE`` prints.

One folder and one naming rule for every mode, so ``deploy logs`` finds each the same way.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LOG_DIR", "log_path"]

LOG_DIR = Path(".deploy/logs")


def log_path(mode: str, key: str | int, folder: Path = LOG_DIR) -> Path:
    """Return the log file of a local ``mode`` process (``web-9696.log``, ``stream-4242.log``)."""
    return folder / f"{mode}-{key}.log"
