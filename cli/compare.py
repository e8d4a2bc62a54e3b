"""``deploy compare``: the three modes side by side (work in progress)."""

from __future__ import annotations

from deploy_modes.cli.console import fail

__all__ = ["compare"]


def compare() -> None:
    """Measure batch, web and stream on the same rides. Example: deploy compare --rides 1000"""
    raise fail("deploy compare is not built yet")
