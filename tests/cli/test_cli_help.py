"""Every registered ``deploy`` command documents itself with an ``Example:`` line."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deploy_modes.cli.main import app

runner = CliRunner()


def _command_paths() -> list[tuple[str, ...]]:
    """Return the argument path of every command and group under ``deploy``."""
    paths: list[tuple[str, ...]] = [()]
    pending: list[tuple[tuple[str, ...], Any]] = [((), typer.main.get_command(app))]
    while pending:
        path, command = pending.pop()
        # typer vendors its own click: duck-type groups instead of isinstance(click.Group).
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*path, name))
            pending.append(((*path, name), sub))
    return sorted(paths)


def test_the_core_commands_are_registered() -> None:
    paths = _command_paths()
    for expected in [("data",), ("train",), ("model",), ("model", "show")]:
        assert expected in paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "deploy")
def test_help_shows_an_example(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output, f"deploy {' '.join(path)} --help has no Example: line"


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["fly"])
    assert result.exit_code == 2
    assert "No such command" in result.output
    assert "Traceback" not in result.output


def test_bare_deploy_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Example:" in result.output
    assert "Traceback" not in result.output


def test_the_cli_loads_without_the_batch_data_libraries() -> None:
    """The stream and web images have no pandas or pyarrow: `deploy` must still start there."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "sys.modules.update(pandas=None, pyarrow=None)  # importing either now fails\n"
        "from deploy_modes.cli.main import app\n"
        "from typer.testing import CliRunner\n"
        "result = CliRunner().invoke(app, ['stream', '--help'])\n"
        "sys.exit(result.exit_code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
