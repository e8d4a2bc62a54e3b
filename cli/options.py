"""The options several commands share, each defined once.

Options default to None: only what the user typed is passed to the settings class as an
override, and the settings read the ``DEPLOY_*`` environment for everything else.
"""

from __future__ import annotations

from typing import Annotated

import typer

from deploy_modes.compose.runtime import Runtime, resolve_runtime
from deploy_modes.core.settings import CoreSettings, load_settings
from deploy_modes.launch.terminal import say
from deploy_modes.web.settings import DEFAULT_PORT

__all__ = [
    "BakeOption",
    "ModelOption",
    "PortOption",
    "RuntimeOption",
    "WorkersOption",
    "chosen_runtime",
    "model_location",
]

ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model: artifact dir, course pickle, MLflow dir or s3:// URI "
        "(env DEPLOY_MODEL_LOCATION; default: models/ride-duration, trained as a demo if "
        "missing).",
        show_default=False,
    ),
]
BakeOption = Annotated[
    bool | None,
    typer.Option(
        "--bake",
        help="Compose runtime: build the model into the image instead of mounting it "
        "read-only (env DEPLOY_COMPOSE_BAKE).",
        show_default=False,
    ),
]
RuntimeOption = Annotated[
    Runtime | None,
    typer.Option(
        help="Where to run (env DEPLOY_RUNTIME; default: auto).",
        case_sensitive=False,
        show_default=False,
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=65535,
        help=f"TCP port (env DEPLOY_WEB_PORT; default: {DEFAULT_PORT}).",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        help="gunicorn workers (env DEPLOY_WEB_WORKERS; default: 1 per CPU).",
        show_default=False,
    ),
]


def chosen_runtime(runtime: Runtime | None) -> Runtime:
    """Return the runtime to use: the option, else DEPLOY_RUNTIME, resolved (auto: Docker?)."""
    requested = runtime or load_settings(CoreSettings).runtime
    return resolve_runtime(requested)


def model_location(model: str | None) -> str:
    """Return the model to serve: the one named (option or env), else the demo model."""
    from deploy_modes.core.demo import ensure_model

    settings = load_settings(CoreSettings, model_location=model)
    if settings.model_named:
        return settings.model_location
    return ensure_model(settings, say)
