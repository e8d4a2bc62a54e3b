"""``deploy stream``: run the stream mode (work in progress)."""

from __future__ import annotations

import typer

from deploy_modes.cli.console import fail, typer_app

__all__ = ["app"]

app = typer_app("Run the stream mode.")


@app.callback(invoke_without_command=True)
def run(ctx: typer.Context) -> None:
    """Run the stream mode. Example: deploy stream"""
    raise fail("deploy stream is not built yet")
