"""The batch mode: score an interval's rides from files, S3 or SQL and write predictions out.

``run_interval("2021-03", input=..., output=...)`` is the Python API; ``deploy batch`` the CLI.
The names below load on first use (PEP 562), so importing a light submodule such as
``deploy_modes.batch.engines`` (the CLI does, in images without pandas or pyarrow) does not
import the job and its data libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BatchJob", "Interval", "Summary", "resolve_intervals", "run_interval", "run_intervals"]

_HOMES = {
    "BatchJob": "job",
    "Summary": "job",
    "Interval": "intervals",
    "resolve_intervals": "intervals",
    "run_interval": "runner",
    "run_intervals": "runner",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
