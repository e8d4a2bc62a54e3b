"""Child processes the CLI (and the tests) start: free ports, readiness waits, clean stops."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from deploy_modes.core.errors import DeployError

__all__ = [
    "ManagedProcess",
    "free_port",
    "http_ok",
    "port_in_use",
    "sigterm_as_interrupt",
    "wait_http",
]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Return whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# Our children listen on loopback: never route their health checks through an HTTP proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Return whether ``url`` answers with a status below 500."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def wait_http(url: str, timeout: float = 30.0, process: ManagedProcess | None = None) -> None:
    """Wait until ``url`` answers, failing early if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if process is not None and process.poll() is not None:
            raise DeployError(
                f"{process.name} exited with code {process.poll()} before {url} answered"
                + process.tail()
            )
        time.sleep(0.1)
    raise DeployError(f"{url} did not answer within {timeout:.0f}s")


class ManagedProcess:
    """A child process with its output in a log file, stopped by SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.args,
                env={**os.environ, **(env or {})},
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,  # our Ctrl-C reaches us first; we stop it in order
            )
        except OSError as exc:  # no such program, not executable
            self._close_log()
            raise DeployError(f"cannot start {name} ({self.args[0]}): {exc.strerror}") from exc

    @classmethod
    def python(cls, name: str, args: Sequence[str], **kwargs: object) -> ManagedProcess:
        """Start ``python args...`` with this interpreter."""
        return cls(name, [sys.executable, *args], **kwargs)  # type: ignore[arg-type]

    @property
    def pid(self) -> int:
        """Return the child's process id."""
        return self.popen.pid

    def poll(self) -> int | None:
        """Return the exit code, or None while it runs."""
        return self.popen.poll()

    def tail(self, lines: int = 20) -> str:
        """Return the last lines of the log, formatted for an error message."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n" + "\n".join(text) if text else ""

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (SIGTERM), wait up to ``timeout``, then SIGKILL; return the exit code."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        code = self.popen.wait()
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL the child's whole process group (gunicorn workers included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._close_log()

    def _close_log(self) -> None:
        if not isinstance(self._log, int):
            self._log.close()
            self._log = subprocess.DEVNULL

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, so both stop children the same graceful way."""

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
