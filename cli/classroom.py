"""``deploy classroom``: the three modes side by side on a live page, and its scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploy_modes.classroom.settings import MAX_RATE
from deploy_modes.cli.console import DeployGroup, say
from deploy_modes.cli.options import (
    ModelOption,
    ModelSha256Option,
    RuntimeOption,
    TrustPickleOption,
    TrustTypeOption,
    chosen_runtime,
    chosen_trust,
    model_location,
)

__all__ = ["app"]

app = typer.Typer(cls=DeployGroup, no_args_is_help=False, invoke_without_command=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        help="The classroom's address (default: http://127.0.0.1:PORT with "
        "DEPLOY_CLASSROOM_PORT, 8800).",
        show_default=False,
    ),
]


def _base(url: str | None) -> str:
    from deploy_modes.classroom.settings import ClassroomSettings
    from deploy_modes.core.settings import load_settings

    if url:
        return url.rstrip("/")
    return f"http://127.0.0.1:{load_settings(ClassroomSettings).port}"


@app.callback()
def classroom(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port of the page (env DEPLOY_CLASSROOM_PORT; default: 8800).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=MAX_RATE,
            help="Rides per second at the start (env DEPLOY_CLASSROOM_RATE; default: 20).",
            show_default=False,
        ),
    ] = None,
    batch_interval: Annotated[
        float | None,
        typer.Option(
            min=2,
            max=3600,
            help="Seconds between batch runs (env DEPLOY_CLASSROOM_BATCH_INTERVAL; default: 15).",
            show_default=False,
        ),
    ] = None,
    runtime: RuntimeOption = None,
    model: ModelOption = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Run web, stream and batch on one stream of rides, live on a page for a class.

    Prints the page's URL (on 127.0.0.1; it opens nothing by itself). The page shows each
    mode's rides, predictions, latency, backlog, errors, model version and memory, checks
    every prediction against the model's own predict, and has a button per scenario.

    Example: deploy classroom --port 8800 --rate 20
    """
    if ctx.invoked_subcommand is not None:
        return
    from deploy_modes.classroom.serve import serve_classroom
    from deploy_modes.classroom.settings import ClassroomSettings
    from deploy_modes.core.settings import load_settings

    settings = load_settings(ClassroomSettings, port=port, rate=rate, batch_interval=batch_interval)
    # Local unless asked: a class should not get containers because an engine happens to answer.
    chosen = chosen_runtime(runtime).value if runtime is not None else "local"
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    serve_classroom(settings, model_location(model), say, trust, runtime=chosen)


@app.command("scenario")
def scenario(
    name: Annotated[str, typer.Argument(help="spike, kill, emulator-restart, new-model or scale.")],
    url: UrlOption = None,
) -> None:
    """Run one scenario in the running classroom and print its measured outcome.

    Exits 1 when the scenario's checks fail (a ride lost, a failed request, a rerun that
    differs).

    Example: deploy classroom scenario spike
    """
    from deploy_modes.classroom.client import run_scenario

    done = run_scenario(_base(url), name, say)
    say(f"{name}: {'passed' if done.ok else 'FAILED'}")
    say(done.explanation)
    for key, value in done.numbers.items():
        say(f"  {key}: {value}")
    if not done.ok:
        raise typer.Exit(1)


@app.command("report")
def report(
    url: UrlOption = None,
    out: Annotated[Path, typer.Option(help="Directory for classroom.md and classroom.png.")] = Path(
        "classroom-report"
    ),
) -> None:
    """Write the running classroom's lanes and scenarios as markdown and a PNG chart.

    Example: deploy classroom report --out classroom-report
    """
    from deploy_modes.classroom.client import get_state
    from deploy_modes.classroom.report import write_report

    for path in write_report(get_state(_base(url)), out):
        say(f"wrote {path}")
