"""Error handling and typer defaults for every ``deploy`` command; the console is re-exported."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import typer
from rich.markup import escape

from deploy_modes.cli.convention import ConventionGroup
from deploy_modes.core.errors import DeployError, UsageError
from deploy_modes.launch.terminal import console, err_console, isatty, progress, say

__all__ = [
    "DeployGroup",
    "console",
    "err_console",
    "fail",
    "isatty",
    "os_error_line",
    "os_errors_as_lines",
    "progress",
    "say",
    "typer_app",
    "warnings_as_lines",
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    # The message quotes user input and library text (botocore's `[/:]`): never markup.
    err_console.print(
        f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def os_error_line(exc: OSError) -> str:
    """Return the one line for an OSError no command handled: the path and the errno text."""
    cause = exc.strerror or " ".join(str(exc).split())
    if exc.filename is not None:
        return f"{exc.filename}: {cause}"
    if _writing_stdout(exc):
        # Point stdout at nothing so the interpreter's flush at exit adds no second message.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return f"cannot write to standard output: {cause}"
    return cause


def _writing_stdout(exc: BaseException) -> bool:
    """Return whether ``exc`` came from writing stdout: a rich console's or click.echo's."""
    from rich.console import Console

    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:  # the innermost Python frame is the one whose write failed
        tb = tb.tb_next
    names = tb.tb_frame.f_locals
    owner = names.get("self")
    if isinstance(owner, Console):
        return owner.file is sys.stdout
    return names.get("file") is sys.stdout


@contextlib.contextmanager
def os_errors_as_lines() -> Iterator[None]:
    """Turn a system error (one with an errno) into one ``error:`` line and exit code 1.

    Exits with SystemExit, not typer.Exit, so it works around ``app()`` too, where a failing
    ``--help`` on a full disk is raised outside click's own handling.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # not the system's answer: a bug, whose traceback helps
            raise
        fail(os_error_line(exc))
        raise SystemExit(1) from None


class DeployGroup(ConventionGroup):
    """A typer group that turns user-facing errors into one clear line and exit code 1 (2)."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with os_errors_as_lines():
                return super().invoke(ctx)
        except UsageError as exc:  # as click's own usage errors, but one line
            raise fail(str(exc), 2) from None
        except DeployError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None


def typer_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """Return a Typer app with the project's defaults (no pretty tracebacks, short help)."""
    kwargs.setdefault("no_args_is_help", False)
    kwargs.setdefault("cls", ConventionGroup)
    return typer.Typer(
        help=help_text,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        **kwargs,
    )


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
                    f"[bold yellow]warning:[/bold yellow] {escape(str(item.message))}",
                    highlight=False,
                    soft_wrap=True,
                )
