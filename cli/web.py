"""``deploy web``: run the web mode (work in progress)."""

from __future__ import annotations

import typer

from deploy_modes.cli.console import fail, typer_app

__all__ = ["app"]

app = typer_app("Run the web mode.")


@app.callback(invoke_without_command=True)
def run(ctx: typer.Context) -> None:
    """Run the web mode. Example: deploy web"""
    raise fail("deploy web is not built yet")
