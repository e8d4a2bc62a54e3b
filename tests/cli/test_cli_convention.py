"""Every ``deploy`` command follows docs/cli.md: walked by introspection, so it cannot drift."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.stream.settings import MAX_SHARDS

runner = CliRunner()
# A wide terminal: each option's help stays on one line, so its words can be found whole.
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}
CLICK_METAVARS = {"TEXT", "INTEGER", "FLOAT", "PATH"}
_CHOICES = re.compile(r"^\[[^|\]]+(\|[^|\]]+)+\]$")


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """Return (argument path, click command) for every command and group under ``deploy``."""
    found: list[tuple[tuple[str, ...], Any]] = []
    pending: list[tuple[tuple[str, ...], Any]] = [((), typer.main.get_command(app))]
    while pending:
        path, command = pending.pop()
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            pending.append(((*path, name), sub))
    return sorted(found, key=lambda item: item[0])


COMMANDS = _commands()
IDS = [" ".join(path) or "deploy" for path, _ in COMMANDS]


def _params(command: Any) -> list[Any]:
    ctx = command.make_context("deploy", [], resilient_parsing=True)
    return command.get_params(ctx)


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def _plain(text: str) -> str:
    """Return rendered help without box drawing, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_metavars_are_clicks(path: tuple[str, ...], command: Any) -> None:
    ctx = command.make_context("deploy", [], resilient_parsing=True)
    for param in _params(command):
        shown = param.display_type_rich(ctx)
        name = "/".join(param.opts)
        if getattr(param, "is_flag", False):
            assert not shown, f"deploy {' '.join(path)}: flag {name} shows a value {shown!r}"
        else:
            assert shown in CLICK_METAVARS or _CHOICES.match(shown), (
                f"deploy {' '.join(path)}: {name} shows {shown!r}, not a click metavar"
            )


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_has_no_typer_style_labels(path: tuple[str, ...], command: Any) -> None:
    shown = _help(path)
    for label in ("<str>", "<int", "<float", "<bool>", "<list", "<path", "<auto|"):
        assert label not in shown, f"deploy {' '.join(path)} --help shows {label}"
    assert "Example:" in shown


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_text_prints_as_written(path: tuple[str, ...], command: Any) -> None:
    """No help text is read as rich markup: brackets and all, it shows word for word."""
    shown = _plain(_help(path))
    for param in _params(command):
        if param.help:
            written = _plain(param.help.replace("\\[", "["))
            assert written in shown, f"deploy {' '.join(path)}: {param.opts} help is mangled"


def test_option_defaults_in_brackets_show() -> None:
    """typer's own ``[default: ...]`` survives rich (the issue: it was eaten)."""
    assert "[default: follow]" in _plain(_help(("stream", "tail")))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_same_things_have_the_same_names(path: tuple[str, ...], command: Any) -> None:
    for param in _params(command):
        opts = [o for o in param.opts if o.startswith("--")]
        where = f"deploy {' '.join(path)}"
        if param.name == "follow":
            assert {"-f", "--follow"} <= set(param.opts), f"{where}: follow needs -f/--follow"
        if param.name == "shards":
            assert (param.min, param.max) == (1, MAX_SHARDS), f"{where}: --shards range"
        if param.name in ("runtime", "engine"):
            assert param.type_descriptor.is_choice, f"{where}: --{param.name} is not an enum"
        if opts and opts[0] == "--output":
            pytest.fail(f"{where}: writes with --output; the convention's name is --out")


def test_a_bad_choice_is_a_usage_error_listing_the_choices() -> None:
    result = runner.invoke(app, ["web", "--runtime", "nope"])
    assert result.exit_code == 2
    assert all(choice in result.output for choice in ("auto", "local", "compose"))


def test_batch_keeps_output_as_an_alias_of_out() -> None:
    command = dict(COMMANDS)[("batch",)]
    out = next(p for p in command.params if p.name == "output")
    assert out.opts[:2] == ["--out", "--output"]


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"deploy-modes {version('deploy-modes')}"


def test_an_old_python_gets_one_line() -> None:
    """The package itself says what is wrong, before any 3.11-only code can fail."""
    import subprocess
    import sys

    probe = "import sys\nsys.version_info = (3, 10, 12, 'final', 0)\nimport deploy_modes.cli.main\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "deploy-modes requires Python 3.11+ (this is 3.10)"


def test_the_project_declares_its_python() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
    assert declared == ">=3.11"
