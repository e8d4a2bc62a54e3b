"""The engines a batch run can score on (a module of its own: the CLI imports it cheaply)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ENGINES", "Engine"]


class Engine(StrEnum):
    """Where an interval is scored: in this process, or on a Dask cluster."""

    local = "local"
    dask = "dask"


ENGINES = tuple(engine.value for engine in Engine)
