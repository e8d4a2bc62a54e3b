"""The log files of the local processes ``deploy`` starts, which ``deploy logs MODE`` prints.

A child (gunicorn, moto) writes its own log file; a mode that runs in this process (the stream
consumer) copies what it prints into one with :func:`teed`, so both read the same way.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TextIO

__all__ = ["LOG_DIR", "log_path", "teed"]

LOG_DIR = Path(".deploy/logs")
# Colours and cursor moves are for the terminal; the log file gets the plain text.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def log_path(mode: str, key: str | int, folder: Path = LOG_DIR) -> Path:
    """Return the log file of a local ``mode`` process (``web-9696.log``, ``stream-4242.log``)."""
    return folder / f"{mode}-{key}.log"


class _Tee:
    """A text stream that writes to the terminal's stream and, uncoloured, to a log file."""

    def __init__(self, stream: TextIO, log: IO[str]) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        self._log.write(_ANSI.sub("", text))
        return written

    def flush(self) -> None:
        self._stream.flush()
        self._log.flush()  # `deploy logs -f` sees a line as soon as the terminal does

    def isatty(self) -> bool:
        return self._stream.isatty()  # rich keeps its terminal look on a terminal

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the terminal's
        return getattr(self._stream, name)


@contextlib.contextmanager
def teed(path: Path) -> Iterator[Path | None]:
    """Copy what this process prints (stdout and stderr) into ``path`` while the block runs.

    Yields the path, or None when it cannot be opened: a read-only folder costs the log file,
    not the run (said in one line, as :func:`~deploy_modes.launch.registry.record` does).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = path.open("a", encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"· cannot write the log {path}: {exc.strerror}", file=sys.stderr)
        yield None
        return
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)  # type: ignore[assignment]
    try:
        yield path
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        log.close()
