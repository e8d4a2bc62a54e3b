"""``deploy status``, ``deploy logs`` and ``deploy down``: what runs, and taking stacks down."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from deploy_modes.cli.console import console, say
from deploy_modes.compose import status as stacks

__all__ = ["down", "logs", "register", "status"]


def status() -> None:
    """Show what runs, in which runtime, whether it is healthy, and who holds which shard.

    Example: deploy status
    """
    found = stacks.overview()
    if found.rows:
        table = Table(title="deploy-modes")
        for column in ("mode", "runtime", "service", "state", "health", "ports", "model"):
            table.add_column(column)
        for row in found.rows:
            table.add_row(
                row.mode, row.runtime, row.service, row.state, row.health, row.ports, row.model
            )
        console.print(table)
    else:
        console.print("nothing runs (start a mode: deploy web, deploy batch, deploy stream)")
    for note in found.stale:
        say(note)
    if found.engine_note:
        say(f"{found.engine_note}: only local services were checked")
    notes: list[str] = []
    _print_leases(stacks.lease_rows(found, notes=notes))
    for note in notes:
        say(note)


def _print_leases(rows: list[stacks.LeaseRow]) -> None:
    """Print which consumer of a stream group holds which shard, one table per source."""
    for source in dict.fromkeys(row.source for row in rows):
        table = Table(title=f"stream leases ({source})")
        for column in ("group", "stream", "shard", "owner", "counter", "checkpoint", "age"):
            table.add_column(column)
        for row in rows:
            if row.source == source:
                table.add_row(
                    row.group,
                    row.stream,
                    row.shard,
                    row.owner,
                    str(row.counter),
                    row.checkpoint,
                    row.age,
                )
        console.print(table)


def logs(
    mode: Annotated[str, typer.Argument(help="web, batch or stream.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int, typer.Option(min=1, max=100_000, help="Lines per container (or of the log file).")
    ] = 200,
) -> None:
    """Print a mode's logs: its local process's (started from this folder) or its compose stack's.

    Example: deploy logs web -f
    """
    code = stacks.logs(mode, follow, tail)
    if code not in (0, 130):
        raise typer.Exit(code)


def down(
    mode: Annotated[str | None, typer.Argument(help="web, batch or stream.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Tear down all three stacks.")] = False,
) -> None:
    """Stop and remove a mode's compose stack (containers, network, volumes).

    Example: deploy down web   (or: deploy down --all)
    """
    stacks.down(stacks.pick_modes(mode, every))


def register(app: typer.Typer) -> None:
    """Add ``status``, ``logs`` and ``down`` to the top-level app."""
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("down")(down)
