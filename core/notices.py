"""Warnings as one ``warning:`` line each, once per process, instead of Python's format."""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Any, TextIO

__all__ = ["show_warnings_as_lines"]

_lock = threading.Lock()


def show_warnings_as_lines(stream: TextIO | None = None) -> None:
    """Make every warning print as ``warning: MESSAGE``, each message once in this process.

    Call it at a process's entry point (the ``deploy`` script, a WSGI factory, the Lambda
    module). Python's own format spans two lines and names our source file, which tells a
    user nothing; a model trained with another scikit-learn is one fact, said once.
    """
    seen: set[str] = set()

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())  # one line, whatever the message holds
        with _lock:
            if text in seen:
                return
            seen.add(text)
        target: Any = file or stream or sys.stderr
        try:
            target.write(f"warning: {text}\n")
            target.flush()
        except (OSError, ValueError):  # a closed stream must not turn a warning into a crash
            pass

    warnings.showwarning = show
