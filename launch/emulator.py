"""The local AWS emulator (moto server) for Kinesis, S3 and DynamoDB on loopback."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from deploy_modes.core.errors import DeployError
from deploy_modes.launch.logs import LOG_DIR, log_path
from deploy_modes.launch.processes import ManagedProcess, port_in_use, wait_http
from deploy_modes.launch.registry import forget, record

__all__ = [
    "DEFAULT_EMULATOR_PORT",
    "EMULATOR_CREDENTIALS",
    "Emulator",
    "emulator_client",
    "ensure_emulator",
    "is_emulator",
]

DEFAULT_EMULATOR_PORT = 4566
# moto accepts any credentials; passing dummy ones keeps boto3 from looking for real ones.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


def is_emulator(url: str, timeout: float = 2.0) -> bool:
    """Return whether a Kinesis API (moto's, or any other) answers at ``url``, not any server."""
    from deploy_modes.stream.kinesis import answers_kinesis

    return answers_kinesis(url, timeout=timeout)


def emulator_client(service: str, url: str) -> Any:
    """Return a boto3 client for ``service`` at the emulator ``url``, with its dummy keys."""
    from deploy_modes.core.storage import aws_client, emulator_keys

    region = EMULATOR_CREDENTIALS["AWS_DEFAULT_REGION"]
    return aws_client(service, url, region_name=region, **emulator_keys())


class Emulator:
    """A moto server we started (``process`` set) or found already answering."""

    def __init__(
        self, url: str, process: ManagedProcess | None = None, entry: Path | None = None
    ) -> None:
        self.url = url
        self.process = process
        self.entry = entry  # its record for `deploy status`, when we started it

    @property
    def started_here(self) -> bool:
        """Return whether this emulator is our child (and ours to stop)."""
        return self.process is not None

    def env(self) -> dict[str, str]:
        """Return the environment that points a child's boto3 at this emulator."""
        return {"AWS_ENDPOINT_URL": self.url, **EMULATOR_CREDENTIALS}

    def client(self, service: str) -> Any:
        """Return a boto3 client for ``service`` on this emulator."""
        return emulator_client(service, self.url)

    def stop(self) -> None:
        """Stop the emulator if we started it."""
        if self.process is not None:
            self.process.stop()
            self.process = None
        forget(self.entry)
        self.entry = None


def ensure_emulator(
    host: str = "127.0.0.1", port: int = DEFAULT_EMULATOR_PORT, log_dir: Path | None = None
) -> Emulator:
    """Return an emulator at ``host:port``: the one already answering, or a new moto server."""
    url = f"http://{host}:{port}"
    if is_emulator(url):  # a Kinesis API, not just any HTTP server on the port
        return Emulator(url)
    if port_in_use(port, host):
        raise DeployError(
            f"port {port} is taken by something that is not an AWS emulator: "
            "stop it or choose another port"
        )
    try:
        import moto as _moto  # noqa: F401 - only to give a clear error
    except ImportError as exc:
        raise DeployError(
            "the local AWS emulator needs moto: pip install 'deploy-modes[emulator]'"
        ) from exc
    # Prefer the moto_server next to this interpreter (the venv's), then one on PATH.
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    args = [moto] if moto else [sys.executable, "-m", "moto.server"]
    log = log_path("moto", port, log_dir or LOG_DIR)
    process = ManagedProcess("moto server", [*args, "-H", host, "-p", str(port)], log_path=log)
    try:
        wait_http(f"{url}/moto-api/", timeout=30, process=process)  # moto's own page
    except BaseException:  # never leave a half-started server behind
        process.stop(timeout=5)
        raise
    # Recorded for `deploy status`/`deploy logs`; the record goes when Emulator.stop() runs.
    entry = record("emulator", port, log, pid=process.pid, command=shlex.join(process.args))
    return Emulator(url, process, entry)
