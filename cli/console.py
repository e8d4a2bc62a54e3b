"""Error handling and typer defaults for every ``deploy`` command; the console is re-exported."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import typer
from rich.markup import escape

from deploy_modes.cli.convention import ConventionGroup
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.terminal import console, err_console, isatty, progress, say

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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    # The message quotes user input and library text (botocore's `[/:]`): never markup.
    err_console.print(
        f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


class DeployGroup(ConventionGroup):
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
