"""The options several commands share, each defined once.

Options default to None: only what the user typed is passed to the settings class as an
override, and the settings read the ``DEPLOY_*`` environment for everything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from deploy_modes.compose.runtime import Runtime, resolve_runtime
from deploy_modes.core.settings import CoreSettings, load_settings
from deploy_modes.launch.terminal import say
from deploy_modes.stream.settings import DEFAULT_SHARDS, MAX_SHARDS
from deploy_modes.web.settings import DEFAULT_PORT

if TYPE_CHECKING:
    from deploy_modes.core.artifact import Trust

__all__ = [
    "BakeOption",
    "ModelOption",
    "ModelSha256Option",
    "PortOption",
    "RuntimeOption",
    "ShardsOption",
    "TrustPickleOption",
    "TrustTypeOption",
    "WorkersOption",
    "chosen_runtime",
    "chosen_trust",
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
ShardsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_SHARDS,
        help=f"Kinesis shards per stream (env DEPLOY_STREAM_SHARDS; default: {DEFAULT_SHARDS}).",
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
TrustPickleOption = Annotated[
    bool | None,
    typer.Option(
        "--trust-pickle",
        help="Load pickle models. Loading a pickle runs any code inside it: only for files "
        "you trust (env DEPLOY_TRUST_PICKLE=1).",
        show_default=False,
    ),
]
TrustTypeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-type",
        help="Allow this type in a skops model (repeatable), e.g. sklearn.tree._tree.Tree "
        "for forests (env DEPLOY_TRUSTED_TYPES, comma-separated; both add up).",
        show_default=False,
    ),
]
ModelSha256Option = Annotated[
    str | None,
    typer.Option(
        "--model-sha256",
        help="Expected sha256 of the model file, from outside the artifact: a mismatch "
        "refuses the model (env DEPLOY_MODEL_SHA256).",
        show_default=False,
    ),
]


def chosen_trust(
    trust_pickle: bool | None, trust_type: list[str] | None, model_sha256: str | None
) -> Trust:
    """Return the trust the options grant on top of the ``DEPLOY_*`` environment."""
    from deploy_modes.core.artifact import Trust

    settings = load_settings(CoreSettings, trust_pickle=trust_pickle, model_sha256=model_sha256)
    return Trust(
        settings.trust_pickle,
        (*settings.trusted_type_list, *(trust_type or ())),
        settings.model_sha256,
    )


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
