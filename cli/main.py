"""The ``deploy`` command: every mode's typer app composed in one place."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from deploy_modes.cli import model
from deploy_modes.cli.console import DeployGroup, os_errors_as_lines
from deploy_modes.web.settings import DEFAULT_PORT

__all__ = ["app", "main"]

app = typer.Typer(
    cls=DeployGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deploy-modes {version('deploy-modes')}")
        raise typer.Exit()


@app.callback(
    help=(
        "One NYC taxi ride-duration model, deployed three ways: batch, web service, stream.\n\n"
        f"Example: deploy web   (then: curl -X POST localhost:{DEFAULT_PORT}/predict ...)"
    )
)
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    pass


app.command("data")(model.data)
app.command("train")(model.train)
app.add_typer(model.model_app, name="model")


def _register_modes() -> None:
    """Add each mode's command group; each lives in its own module."""
    from deploy_modes.cli import batch, classroom, compare, stacks, stream, web

    app.add_typer(web.app, name="web")
    app.add_typer(batch.app, name="batch")
    app.add_typer(stream.app, name="stream")
    app.command("compare")(compare.compare)
    app.add_typer(classroom.app, name="classroom")
    stacks.register(app)


_register_modes()


def main() -> None:
    """Run the ``deploy`` console script."""
    from deploy_modes.core.notices import show_warnings_as_lines

    show_warnings_as_lines()  # e.g. ModelVersionWarning: one `warning:` line, said once
    with os_errors_as_lines():  # e.g. --help into a full disk, before any command runs
        app()
