"""Shared console, error handling and progress helpers for every ``deploy`` command."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from deploy_modes.core.errors import DeployError

__all__ = [
    "DeployGroup",
    "console",
    "err_console",
    "fail",
    "isatty",
    "progress",
    "say",
    "typer_app",
    "warnings_as_lines",
]

_PLAIN_STEPS = 10  # off a terminal, report progress at every 10%

# soft_wrap: long lines stay whole in logs and pipes instead of wrapping at 80 columns.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def say(message: str) -> None:
    """Print a progress message the way every command does."""
    console.print(f"[dim]·[/dim] {message}", highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class DeployGroup(TyperGroup):
    """A typer group that turns user-facing errors into one clear line and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:
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


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a rich progress bar on a terminal, a few plain lines otherwise."""
    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
        return
    done = 0
    reported = 0

    def advance(n: int) -> None:
        nonlocal done, reported
        done += n
        step = done * _PLAIN_STEPS // max(total, 1)
        if step > reported:
            reported = step
            console.print(f"{description}: {done:,}/{total:,}", highlight=False)

    yield advance


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Print warnings raised inside as one ``warning: ...`` line each, not Python's format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for item in caught:
                err_console.print(
                    f"[bold yellow]warning:[/bold yellow] {item.message}",
                    highlight=False,
                    soft_wrap=True,
                )
