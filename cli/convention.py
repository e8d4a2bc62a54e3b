"""The CLI convention (docs/cli.md) applied where click builds every command's help.

typer 0.29 labels values ``<str>``, ``<int range>`` and even flags ``<bool>``; the convention
is click's own: TEXT, INTEGER, FLOAT, PATH, choices as ``[a|b]``, and nothing after a flag.
Help text is the author's words, never rich markup: brackets in it print as typed.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = [
    "FOLLOW_FLAGS",
    "METAVARS",
    "ConventionCommand",
    "ConventionGroup",
    "metavar",
]

# click's names for the value types our options take.
METAVARS: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}
# Every command that keeps following output spells it the same way.
FOLLOW_FLAGS = ("-f", "--follow")


def metavar(param: Any) -> str:
    """Return click's label for what ``param`` takes: TEXT, INTEGER, ..., [a|b], or nothing."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    described = param.type_descriptor
    if described.is_choice:
        values = (c.value if isinstance(c, Enum) else c for c in described.choices or ())
        return "[" + "|".join(str(v) for v in values) + "]"
    if described.is_path:
        return "PATH"
    annotation = described.annotation
    if described.is_list:
        annotation = annotation.__args__[0]
    return METAVARS.get(annotation, "TEXT")


class _Option(TyperOption):
    def display_type(self, ctx: Any) -> str:
        return metavar(self)


class _Argument(TyperArgument):
    def display_type(self, ctx: Any) -> str:
        return metavar(self)


def _follow_convention(param: Any) -> None:
    """Give ``param`` click's metavar and plain (unmarked-up) help, once."""
    if isinstance(param, _Option | _Argument):
        return
    if isinstance(param, TyperOption):
        param.__class__ = _Option  # same state, click's labels: typer offers no cls hook here
    elif isinstance(param, TyperArgument):
        param.__class__ = _Argument
        if param.metavar is None:
            param.metavar = param.name.upper()  # click's usage: deploy model show LOCATION
    else:
        return
    if param.help:
        param.help = escape(param.help)


def _adopt(command: Any) -> None:
    """Make ``command``'s own help and parameters follow the convention."""
    for name in ("help", "short_help", "epilog"):
        text = getattr(command, name, None)
        if text:
            setattr(command, name, escape(text))
    for param in command.params:
        _follow_convention(param)


def _conventional_params(params: list[Any]) -> list[Any]:
    for param in params:  # --help is only added by get_params, after __init__
        _follow_convention(param)
    return params


class ConventionCommand(TyperCommand):
    """A typer command whose help follows docs/cli.md."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _adopt(self)

    def get_params(self, ctx: Any) -> list[Any]:
        """Return the parameters, ``--help`` included, following the convention."""
        return _conventional_params(super().get_params(ctx))


class ConventionGroup(TyperGroup):
    """A typer group whose help, and its plain subcommands' help, follow docs/cli.md."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _adopt(self)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                # typer builds commands as TyperCommand unless each names a cls: converting
                # them here means a new command cannot miss the convention.
                command.__class__ = ConventionCommand
                _adopt(command)

    def get_params(self, ctx: Any) -> list[Any]:
        """Return the parameters, ``--help`` included, following the convention."""
        return _conventional_params(super().get_params(ctx))
