"""The terminal every command and launcher reports to: one console, progress, one-line notes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

__all__ = ["console", "err_console", "isatty", "progress", "say"]

_PLAIN_STEPS = 10  # off a terminal, report progress at every 10%

# soft_wrap: long lines stay whole in logs and pipes instead of wrapping at 80 columns.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def say(message: str) -> None:
    """Print a progress message the way every command does (its text is never markup)."""
    # Messages carry paths, URLs and library errors: `rides[old].parquet` must print as typed.
    console.print(f"[dim]·[/dim] {escape(message)}", highlight=False)


def isatty() -> bool:
    """Return whether stdout is a terminal (progress bars) or not (plain summary lines)."""
    return sys.stdout.isatty()


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a rich progress bar on a terminal, a few plain lines otherwise."""
    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}", markup=False),
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
