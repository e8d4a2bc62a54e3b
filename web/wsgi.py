"""The one wiring module gunicorn loads: ``gunicorn deploy_modes.web.wsgi:app``.

Module-level set-up is deliberate here (and only here): with gunicorn's ``preload_app`` the
master loads the model once and every forked worker shares it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask

from deploy_modes.core.artifact import Trust, load_model
from deploy_modes.core.errors import DeployError
from deploy_modes.core.notices import show_warnings_as_lines
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.settings import CoreSettings
from deploy_modes.web.access import ACCESS_LOGGER
from deploy_modes.web.app import create_app
from deploy_modes.web.bridge import WSGIBridge
from deploy_modes.web.settings import WebSettings, load_settings

__all__ = ["app", "asgi", "build_app", "configure_logging", "entry_point", "proven_app"]


def configure_logging() -> None:
    """Send the JSON access lines, bare, to stdout (once, however often it is called)."""
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(getattr(h, "_deploy_web", False) for h in access.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._deploy_web = True  # type: ignore[attr-defined]
        access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False  # the line is already JSON; no second, prefixed copy


def build_app(web: WebSettings, core: CoreSettings) -> Flask:
    """Load the configured model and return the app serving it."""
    return create_app(ModelService(load_model(core.model_location, Trust.from_settings(core))), web)


def proven_app(location: str, trust: Trust, web: WebSettings) -> Flask:
    """Load, prove and probe the model at ``location``; return its app or raise DeployError.

    The checks ``deploy web`` makes at start (trust, hash, target, the scoring shortcut's
    proof against ``predict``, the probe ride behind ``/ready``), but stricter: a model that
    starts the server unready is refused here, since a working one is serving already.
    """
    flask_app = create_app(ModelService(load_model(location, trust)), web)
    unready = flask_app.extensions["deploy_web"]["unready"]
    if unready is not None:
        raise DeployError(f"the model at {location} failed its probe ride: {unready}")
    return flask_app


def entry_point(flask_app: Flask, web: WebSettings) -> Any:
    """Return what gunicorn calls: the ASGI bridge for the ``asgi`` worker, else the WSGI app."""
    if web.worker_class != "asgi":
        return flask_app
    return WSGIBridge(flask_app, web.max_body_bytes, web.body_timeout)


def _load() -> Flask:
    configure_logging()
    # Before the model loads: a ModelVersionWarning is one `warning:` line in the gunicorn log
    # (the master loads it once with preload_app; forked workers inherit the hook, not a reload).
    show_warnings_as_lines()
    try:
        return build_app(load_settings(WebSettings), load_settings(CoreSettings))
    except DeployError as exc:
        # One clear line in the log instead of a gunicorn traceback; gunicorn exits with it.
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


app = _load()
# The same app for gunicorn's asyncio worker (``worker_class = "asgi"``, the default).
asgi = WSGIBridge(
    app, app.config["MAX_CONTENT_LENGTH"], app.extensions["deploy_web"]["settings"].body_timeout
)
