"""``deploy batch``: run the batch mode (work in progress)."""

from __future__ import annotations

import typer

from deploy_modes.cli.console import fail, typer_app

__all__ = ["app"]

app = typer_app("Run the batch mode.")


@app.callback(invoke_without_command=True)
def run(ctx: typer.Context) -> None:
    """Run the batch mode. Example: deploy batch"""
    raise fail("deploy batch is not built yet")
