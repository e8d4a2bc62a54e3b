"""Swap the served model without downtime: gunicorn's SIGHUP, with the model loaded in the master.

With ``preload_app`` gunicorn's HUP re-reads its config but never re-imports the app (the
arbiter keeps ``app.callable``), so new workers would fork the old model. The ``on_reload``
hook (web/gunicorn_conf.py) runs in the master after the config is re-read and before the new
workers are forked: :func:`reload_app` loads and proves the next model there and puts its app
in ``app.callable``. gunicorn then forks the new workers from it and retires the old ones with
SIGTERM, its graceful stop: they finish the requests in flight. A model that fails any check
is refused and the old app stays in ``app.callable``: the workers forked next serve it again.

``deploy web reload`` talks to the master through two small JSON files next to the process
record: a :class:`ReloadRequest` (which model, which trust) it writes before the SIGHUP, and
the :class:`ReloadResult` the master writes after. A bare SIGHUP (``kill -HUP``, the container)
finds no request and re-reads the location served now, with the trust it was loaded with.
"""

from __future__ import annotations

import gc
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.web.bridge import served_app

__all__ = [
    "RESULT_SUFFIX",
    "ReloadRequest",
    "ReloadResult",
    "reload_app",
    "result_path",
]

RESULT_SUFFIX = ".reloaded"
# A worker answers SIGTERM between two requests: a 10,000-ride batch takes ~50 ms.
_ACK_TIMEOUT = 5.0


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` atomically: a reader never sees half of it."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(json.dumps(value))
    staged.replace(path)


def _trust_of(value: dict[str, Any]) -> Trust:
    return Trust(bool(value["pickle"]), tuple(value["types"]), str(value["sha256"]))


@dataclass(frozen=True)
class ReloadRequest:
    """The next model to load: its location (None: the one served now, re-read) and trust."""

    location: str | None
    trust: Trust
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        """Return the request as the master reads it (a replica's is copied into its container)."""
        return {"id": self.id, "location": self.location, "trust": asdict(self.trust)}

    def write(self, path: Path) -> None:
        """Leave the request where the master looks for it."""
        _write_json(path, self.to_json())

    @classmethod
    def take(cls, path: Path) -> ReloadRequest | None:
        """Read and remove the request at ``path``; None when there is none (a bare SIGHUP)."""
        try:
            value = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        finally:
            # Taken once: a later bare SIGHUP must not replay a request, refused or not.
            path.unlink(missing_ok=True)
        return cls(value["location"], _trust_of(value["trust"]), str(value["id"]))


@dataclass(frozen=True)
class ReloadResult:
    """What the master did with a reload: the version serving now and the workers retired."""

    id: str | None  # the request's, None for a bare SIGHUP
    ok: bool
    message: str
    version: str  # serving after the reload: the new one, or the old one when refused
    previous: str
    old_workers: tuple[int, ...] = ()  # the pids gunicorn retires once they finish
    seconds: float = 0.0  # loading and proving the model

    def write(self, path: Path) -> None:
        """Leave the result for ``deploy web reload``."""
        _write_json(path, {**asdict(self), "old_workers": list(self.old_workers)})

    @classmethod
    def read(cls, path: Path) -> ReloadResult | None:
        """Return the result at ``path``, or None while there is none."""
        try:
            return cls.parse(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    @classmethod
    def parse(cls, text: str | bytes) -> ReloadResult:
        """Return the result written as ``text``; ValueError when it is not one."""
        try:
            value = json.loads(text)
            return cls(**{**value, "old_workers": tuple(value["old_workers"])})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a reload result: {exc}") from None


def result_path(request_file: Path) -> Path:
    """Return where the master answers the requests it finds at ``request_file``."""
    return request_file.with_suffix(RESULT_SUFFIX)


@dataclass
class _Served:
    """What the master serves now, so a bare SIGHUP re-reads the same location, same trust."""

    location: str
    trust: Trust


_served: _Served | None = None


def reload_app(server: Any) -> ReloadResult:
    """Load and prove the next model in the master and make it the app new workers fork.

    Never raises: an exception here would stop gunicorn's master, and with it the service.
    """
    global _served
    from deploy_modes.core.settings import CoreSettings
    from deploy_modes.web import wsgi
    from deploy_modes.web.settings import WebSettings, load_settings

    web = load_settings(WebSettings)
    if _served is None:  # the first reload: what the master loaded at start
        core = load_settings(CoreSettings)
        _served = _Served(core.model_location, Trust.from_settings(core))
    request_file = Path(web.reload_file) if web.reload_file else None
    try:
        request = ReloadRequest.take(request_file) if request_file else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        request = None
        server.log.error("reload: ignoring an unreadable request at %s: %s", request_file, exc)
    location = (request.location if request else None) or _served.location
    trust = request.trust if request else _served.trust
    old = server.app.callable
    previous = served_app(old).extensions["deploy_web"]["service"]
    old_name, old_version = previous.name, previous.version
    del previous  # no reference to the old model beyond the old app's, so it can be freed
    old_workers = tuple(sorted(server.WORKERS))
    started = time.perf_counter()
    try:
        new_app = wsgi.proven_app(location, trust, web)
    except Exception as exc:  # refused, whatever the reason: the old model keeps serving
        message = str(exc) if isinstance(exc, DeployError) else f"{type(exc).__name__}: {exc}"
        message = " ".join(message.split())  # one line in the log, whatever the error holds
        server.log.error("reload refused, still serving version %s: %s", old_version, message)
        result = ReloadResult(
            request.id if request else None,
            False,
            message,
            old_version,
            old_version,
            (),
            time.perf_counter() - started,
        )
    else:
        seconds = time.perf_counter() - started  # loading and proving, the part a model costs
        server.app.callable = wsgi.entry_point(new_app, web)
        _served = _Served(location, trust)
        service = new_app.extensions["deploy_web"]["service"]
        if (service.name, service.version) != (old_name, old_version):
            # deploy_web_model_info is "max" over processes: the master's 1 for the old version
            # would outlive it, so the master says 0 for it (the new app set 1 for its own).
            metrics = served_app(old).extensions["deploy_web"]["metrics"]
            metrics.model_info.labels(old_name, old_version).set(0)
        # pre_fork froze the old app out of the collector's sight; unfreeze so its cycles can be
        # collected (in the master only; pre_fork freezes the new app before the next fork).
        # Before the old workers stop, so the full collection does not lengthen the pause.
        del old, new_app
        gc.unfreeze()
        gc.collect()
        _stop_accepting(server, old_workers)
        message = (
            f"serving {service.name} version {service.version} from {location} "
            f"(was {old_version}; loaded and proven in {seconds:.2f} s, scoring path "
            f"{service.fast_path}); {len(old_workers)} old workers stop after their requests"
        )
        server.log.info("reload: %s", message)
        result = ReloadResult(
            request.id if request else None,
            True,
            message,
            service.version,
            old_version,
            old_workers,
            seconds,
        )
    if request_file is not None:
        try:
            result.write(result_path(request_file))
        except OSError as exc:  # the reload stands; only `deploy web reload` will not hear
            server.log.error("reload: cannot write %s: %s", result_path(request_file), exc)
    return result


def _stop_accepting(server: Any, pids: tuple[int, ...]) -> None:
    """SIGTERM the old workers and wait until none accepts, before gunicorn forks new ones.

    gunicorn alone forks the new workers first and SIGTERMs the old ones after, so for a moment
    both accept and a client's answers could go new, old, new. Until the new workers accept,
    connections wait in the listening socket's backlog (the master holds it), never refused.
    The old workers still finish what they accepted: SIGTERM is gunicorn's graceful stop.
    """
    import signal

    from deploy_modes.web.workers import stopped_accepting

    for pid in pids:
        server.kill_worker(pid, signal.SIGTERM)
    deadline = time.monotonic() + _ACK_TIMEOUT
    while time.monotonic() < deadline:
        # A worker gone from WORKERS was reaped: it accepts nothing either.
        waiting = [w for pid, w in list(server.WORKERS.items()) if pid in pids]
        if all(stopped_accepting(worker) for worker in waiting):
            return
        time.sleep(0.005)
    server.log.warning(
        "reload: old workers did not confirm they stopped accepting within %g s", _ACK_TIMEOUT
    )
