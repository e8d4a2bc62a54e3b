"""gunicorn settings for the web service, all read from ``DEPLOY_WEB_*`` variables.

Run: ``gunicorn -c python:deploy_modes.web.gunicorn_conf`` (the config names the app: the
ASGI bridge for the default ``asgi`` worker class, the plain WSGI app for ``gthread``/``sync``).
Each server start gets a fresh, empty ``PROMETHEUS_MULTIPROC_DIR`` so ``/metrics`` sums the
live workers of this server only, and dead workers are marked so their gauges go away.
"""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

# Nothing imported here may import prometheus-client: the metrics directory must be set first.
from deploy_modes.core.errors import DeployError
from deploy_modes.web.settings import MULTIPROC_ENV, WebSettings, load_settings

WORKER_CLASSES = {
    "asgi": "deploy_modes.web.workers.ASGIWorker",
    "gthread": "deploy_modes.web.workers.ThreadWorker",
    "sync": "deploy_modes.web.workers.SyncWorker",
}

__all__ = [
    "accesslog",
    "backlog",
    "bind",
    "child_exit",
    "control_socket_disable",
    "errorlog",
    "graceful_timeout",
    "keepalive",
    "loglevel",
    "on_exit",
    "on_reload",
    "on_starting",
    "pre_fork",
    "preload_app",
    "proc_name",
    "threads",
    "timeout",
    "worker_class",
    "worker_connections",
    "worker_tmp_dir",
    "workers",
    "wsgi_app",
]


def _fresh_multiproc_dir() -> tuple[str, bool]:
    """Return an empty metrics directory (emptying a given one) and whether we created it."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # files of a previous server would be summed in
            stale.unlink()
        return str(path), False
    created = tempfile.mkdtemp(prefix="deploy-web-metrics-")
    # Set before the app (and so prometheus-client) is imported: it picks its storage then.
    os.environ[MULTIPROC_ENV] = created
    return created, True


try:
    _settings = load_settings(WebSettings)
except DeployError as _exc:
    # One clear line rather than gunicorn's "failed to read config" traceback.
    print(f"error: {_exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
_metrics_dir, _created_metrics_dir = _fresh_multiproc_dir()

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host
bind = [f"{_host}:{_settings.port}"]
workers = _settings.workers
# gunicorn's classes, subclassed: its own error answers (431, 400...) go out as JSON, and a body
# or header that stalls past its timeout frees the connection (web/workers.py).
worker_class = WORKER_CLASSES[_settings.worker_class]
# The asyncio worker takes an ASGI callable: the bridge around the same Flask app.
wsgi_app = "deploy_modes.web.wsgi:" + ("asgi" if _settings.worker_class == "asgi" else "app")
worker_connections = _settings.max_connections
threads = (
    _settings.threads if _settings.worker_class == "gthread" else 1
)  # others warn about threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
backlog = _settings.backlog
preload_app = True  # load the model once in the master; forked workers share its memory
accesslog = None  # the app writes one JSON line per request (with its request id) itself
errorlog = "-"
loglevel = _settings.log_level
proc_name = "deploy-web"
# gunicorn's control socket has one default path per user: several servers would fight over it.
control_socket_disable = True
# Worker heartbeats on a RAM disk: a slow or full overlay disk must not look like a hung worker.
_SHM = "/dev/shm"
worker_tmp_dir = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def on_starting(server: Any) -> None:
    """Tie the master's life to the ``deploy web`` that started it (``DEPLOY_WEB_PARENT_PID``).

    ``deploy web`` stops gunicorn on Ctrl-C or SIGTERM, but a SIGKILLed ``deploy web`` cannot:
    its gunicorn, in a session of its own, would serve on, holding the port. The kernel sends
    the master SIGTERM (gunicorn's graceful stop) when its parent ends. Set here, in the master
    itself, rather than in a ``preexec_fn`` (unsafe in a process with threads).
    """
    parent = _settings.parent_pid
    if parent is None:
        return
    if not sys.platform.startswith("linux"):
        server.log.warning("DEPLOY_WEB_PARENT_PID is Linux only: not stopping with pid %s", parent)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise SystemExit(
            f"error: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}"
        )
    if os.getppid() != parent:  # it ended before the prctl: no signal will ever come
        raise SystemExit(f"error: the process that started gunicorn (pid {parent}) is gone")


def pre_fork(server: Any, worker: Any) -> None:
    """Move everything loaded so far (modules, the model) out of the garbage collector's sight.

    The preloaded app holds about 150,000 objects; a full collection walks them all, about
    70 ms during which a worker answers nothing: that was the p99 at concurrency 64. Frozen
    objects are never scanned (and never written to, so forked workers keep sharing them).
    """
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Mark a dead worker's metric files so live-only gauges stop counting it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_reload(server: Any) -> None:
    """Load and prove the next model before gunicorn forks new workers (see web/reload.py).

    With ``preload_app`` a HUP never re-imports the app: without this hook the new workers
    would fork the old model.
    """
    from deploy_modes.web.reload import reload_app

    try:
        reload_app(server)
    except Exception:  # a bug: an exception escaping a hook stops the master, and the service
        server.log.exception("reload failed; the workers forked next serve the app they had")


def on_exit(server: Any) -> None:
    """Remove the metrics directory this config created."""
    if _created_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
