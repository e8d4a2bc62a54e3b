"""The one place that runs Docker Compose: ``docker compose`` (v2) or ``docker-compose`` (v1).

A :class:`Stack` is one mode's compose project, ``<prefix>-<mode>`` (``deploy-web``,
``deploy-batch``, ``deploy-stream`` with the default prefix, ``DEPLOY_COMPOSE_PROJECT_PREFIX``;
distinct names keep the stacks apart so they run side by side). Containers are inspected with
the docker SDK through the labels both compose versions set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_modes.compose.settings import ComposeSettings, check_project_prefix
from deploy_modes.core.errors import DeployError
from deploy_modes.core.settings import load_settings
from deploy_modes.launch.terminal import console, err_console, isatty

__all__ = [
    "COMPOSE_DIR",
    "MODES",
    "ContainerState",
    "Stack",
    "compose_command",
    "connect_engine",
    "docker_client",
]

# The YAML and Dockerfiles sit beside this module in a checkout (the editable install points here).
COMPOSE_DIR = Path(__file__).resolve().parent
MODES = ("web", "batch", "stream")
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
TAIL_LINES = 40
# Classic-builder chatter that says nothing a reader needs (shown only in the failure tail).
_NOISE = (" ---> ", "Removing intermediate container", "DEPRECATED: The legacy builder", "   ")
# A container without a healthcheck counts as up once it has run this long without restarting.
SETTLE_SECONDS = 3.0


@functools.cache
def compose_command() -> tuple[str, ...]:
    """Return the compose command here: ``docker compose`` (v2) if present, else v1."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    if legacy:
        return (legacy,)
    raise DeployError(
        "neither `docker compose` (v2) nor `docker-compose` (v1) is installed: install the "
        "docker-compose-plugin, or `apt-get install docker-compose`; or use --runtime local"
    )


def _unix_socket_problem() -> str | None:
    """Return why the engine's unix socket cannot answer (missing, refused), or None."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    if not os.path.exists(path):
        return f"no socket at {path}"
    # Probed with a socket we close ourselves: docker-py leaves the socket of a refused connect
    # open (a ResourceWarning at some later collection), and closing its client does not close it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except OSError as exc:
            return type(exc).__name__
    return None


def connect_engine(timeout: float = 10.0) -> tuple[Any | None, str]:
    """Return a docker SDK client whose engine answered and its version, or None and why not."""
    try:
        import docker
    except ImportError:
        return None, "the docker SDK is not installed (pip install 'deploy-modes[compose]')"
    problem = _unix_socket_problem()
    if problem:
        return None, f"no Docker engine answers ({problem})"
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        version = str(client.version().get("Version", "?"))
    except Exception as exc:  # any failure to reach the engine means "no engine"
        if client is not None:
            client.close()
        return None, f"no Docker engine answers ({type(exc).__name__})"
    return client, version


def docker_client() -> Any:
    """Return a docker SDK client, or raise a clear error when no engine answers."""
    client, version = connect_engine()
    if client is None:
        raise DeployError(
            f"{version}: start Docker (CI: bash .ci/docker.sh) or use --runtime local"
        )
    return client


@dataclass(frozen=True)
class ContainerState:
    """What one container of a stack is doing, as ``deploy status`` shows it."""

    name: str
    service: str
    status: str
    health: str | None
    exit_code: int
    restarts: int
    ports: str
    oneoff: bool

    @property
    def healthy(self) -> bool:
        """Return whether the container runs and (when it has a healthcheck) is healthy."""
        return self.status == "running" and self.health in (None, "healthy")

    @classmethod
    def of(cls, container: Any) -> ContainerState:
        """Read a docker SDK container's state."""
        attrs = container.attrs
        state = attrs.get("State", {})
        health = (state.get("Health") or {}).get("Status")
        labels = attrs.get("Config", {}).get("Labels") or {}
        published = []
        for inner, bindings in sorted(
            (attrs.get("NetworkSettings", {}).get("Ports") or {}).items()
        ):
            for binding in bindings or []:
                published.append(f"{binding['HostIp']}:{binding['HostPort']}->{inner}")
        return cls(
            name=container.name,
            service=labels.get(SERVICE_LABEL, "?"),
            status=state.get("Status", "?"),
            health=health,
            exit_code=int(state.get("ExitCode") or 0),
            restarts=int(attrs.get("RestartCount") or 0),
            ports=", ".join(published),
            oneoff=labels.get(ONEOFF_LABEL, "False") == "True",
        )


def _project_prefix() -> str:
    """Return the project prefix the environment names (a bad one is one clear error)."""
    return load_settings(ComposeSettings).project_prefix


@dataclass
class Stack:
    """One mode's compose project: its files, variables and containers."""

    mode: str
    env: Mapping[str, str] = field(default_factory=dict)
    files: Sequence[Path] = ()
    prefix: str = field(default_factory=_project_prefix)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DeployError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        try:  # a prefix given here is checked as the environment's is
            check_project_prefix(self.prefix)
        except ValueError as exc:
            raise DeployError(f"invalid compose project prefix {self.prefix!r}: {exc}") from None
        if not self.files:
            self.files = (COMPOSE_DIR / f"{self.mode}.yml",)
        for path in self.files:
            if not Path(path).is_file():
                raise DeployError(
                    f"compose file {path} not found: the compose runtime runs from a checkout "
                    "of the project (it builds images from the source)"
                )

    @property
    def project(self) -> str:
        """Return the compose project name, ``<prefix>-<mode>``: the one place it is derived."""
        return f"{self.prefix}-{self.mode}"

    def args(self, *command: str) -> list[str]:
        """Return the full compose command line for ``command``."""
        files = [part for path in self.files for part in ("-f", str(path))]
        return [
            *compose_command(),
            "-p",
            self.project,
            "--project-directory",
            str(COMPOSE_DIR),
            *files,
            *command,
        ]

    def run(self, *command: str, label: str | None = None, quiet: bool = False) -> int:
        """Run a compose command, streaming its output (a spinner on a terminal); return its code.

        On failure the last lines are printed (when they were not shown as they came).
        """
        process = subprocess.Popen(
            self.args(*command),
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        assert process.stdout is not None
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        spinner = isatty() and not quiet
        status = console.status(label or " ".join(command)) if spinner else None
        try:
            if status is not None:
                status.start()
            for raw in process.stdout:
                line = raw.rstrip()
                tail.append(line)
                if status is not None:
                    status.update(f"{label or command[0]}: [dim]{line[-100:]}[/dim]")
                elif not quiet and line.strip() and not line.startswith(_NOISE):
                    console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
            code = process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
        finally:
            if status is not None:
                status.stop()
            process.stdout.close()
        if code != 0 and (spinner or quiet):
            err_console.print("\n".join(tail), highlight=False, markup=False)
        return code

    def capture(self, *command: str) -> str:
        """Run a compose command and return its output (for ``port`` and ``logs``)."""
        result = subprocess.run(
            self.args(*command),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        if result.returncode != 0:
            raise DeployError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def passthrough(self, *command: str) -> int:
        """Run a compose command attached to this terminal (``logs -f``); return its code."""
        return subprocess.run(
            self.args(*command), env={**os.environ, **self.env}, check=False
        ).returncode

    def containers(self, client: Any | None = None) -> list[ContainerState]:
        """Return the states of this project's containers, stopped ones included."""
        client = client or docker_client()
        found = client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        return sorted((ContainerState.of(c) for c in found), key=lambda s: (s.service, s.name))

    def published_port(self, service: str, inner: int) -> int:
        """Return the host port that ``service``'s ``inner`` port is published on."""
        out = self.capture("port", service, str(inner)).strip()
        try:
            return int(out.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            raise DeployError(f"{service} does not publish port {inner} ({out!r})") from None

    def wait_healthy(self, services: Sequence[str], timeout: float = 180.0) -> None:
        """Wait until each service runs (and is healthy); fail fast on exits and restarts."""
        with contextlib.closing(docker_client()) as client:
            self._wait_healthy(client, services, timeout)

    def _wait_healthy(self, client: Any, services: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        settled: dict[str, float] = {}
        waiting = list(services)
        while waiting:
            states = {s.service: s for s in self.containers(client) if not s.oneoff}
            for service in list(waiting):
                state = states.get(service)
                if state is None:
                    continue
                if state.status in ("exited", "dead"):
                    raise DeployError(
                        f"the {service} container exited with code {state.exit_code}: "
                        "see its logs above"
                    )
                if state.restarts > 0:
                    raise DeployError(
                        f"the {service} container crashed and was restarted: see its logs above"
                    )
                if state.health == "unhealthy":
                    raise DeployError(
                        f"the {service} container is unhealthy (its healthcheck fails): "
                        "see its logs above"
                    )
                if state.status != "running" or state.health == "starting":
                    continue
                if state.health == "healthy":
                    waiting.remove(service)
                    continue
                first_seen = settled.setdefault(service, time.monotonic())
                if time.monotonic() - first_seen >= SETTLE_SECONDS:
                    waiting.remove(service)
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{', '.join(waiting)} not healthy within {timeout:.0f}s: see the logs above"
                )
            time.sleep(0.5)

    def print_logs(self, tail: int = 60) -> None:
        """Print the last lines of every container's log (after a failure)."""
        try:
            text = self.capture("logs", "--no-color", "--tail", str(tail))
        except DeployError as exc:
            text = str(exc)
        err_console.rule(f"{self.project} container logs (last {tail} lines each)")
        err_console.print(text.rstrip() or "(no output)", highlight=False, markup=False)
        err_console.rule()

    def down(self) -> int:
        """Remove the project's containers, networks and volumes (idempotent)."""
        return self.run("down", "--volumes", "--remove-orphans", "--timeout", "20", quiet=True)
