"""Run a classroom: start the room, serve the page on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from deploy_modes.classroom.settings import ClassroomSettings
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import port_in_use, sigterm_as_interrupt

__all__ = ["HOST", "serve_classroom"]

HOST = "127.0.0.1"  # a classroom page is never served beyond this machine


def serve_classroom(
    settings: ClassroomSettings,
    model: str,
    say: Callable[[str], None],
    trust: Trust | None = None,
    workdir: Path | None = None,
    runtime: str = "local",
) -> None:
    """Start the three modes and the page; stop everything on Ctrl-C or SIGTERM."""
    import logging

    from werkzeug.serving import make_server

    from deploy_modes.classroom.room import Room
    from deploy_modes.classroom.server import create_app

    if port_in_use(settings.port, HOST):
        raise DeployError(
            f"port {settings.port} on {HOST} is already in use: choose another with --port"
        )
    folder = workdir or Path(tempfile.mkdtemp(prefix="deploy-classroom-"))
    log_dir = folder / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    room = Room(settings, model, folder, log_dir, say, trust, runtime)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per page poll
    server = make_server(HOST, settings.port, create_app(room), threaded=True)
    try:
        with sigterm_as_interrupt():
            room.start()
            say(f"classroom ready: http://{HOST}:{settings.port}/  (logs: {log_dir})")
            say("stop with Ctrl-C")
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping the rides, then the three modes")
        server.server_close()
        room.close()
        say("stopped")
