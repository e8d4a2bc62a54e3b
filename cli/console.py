"""Shared console, error handling and progress helpers for every ``deploy`` command."""

from __future__ import annotations

import sys
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from deploy_modes.core.errors import DeployError

__all__ = ["DeployGroup", "console", "err_console", "fail", "say", "typer_app"]

console = Console()
err_console = Console(stderr=True)


def say(message: str) -> None:
    """Print a progress message the way every command does."""
    console.print(f"[dim]·[/dim] {message}", highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class DeployGroup(TyperGroup):
    """A typer group that turns user-facing errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeployError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None


def typer_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """Return a Typer app with the project's defaults (no pretty tracebacks, short help)."""
    kwargs.setdefault("no_args_is_help", False)
    return typer.Typer(
        help=help_text,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **kwargs,
    )


def isatty() -> bool:
    """Return whether stdout is a terminal (progress bars) or not (plain summary lines)."""
    return sys.stdout.isatty()
