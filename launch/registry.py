"""Records of the local processes ``deploy`` started, so ``deploy status`` and ``logs`` find them.

One JSON file per process under the project's state folder (``.deploy/processes``): the mode,
pid, port, log file, the command as typed and the process's start time. A record whose pid is
gone, or now belongs to another process (a different start time), is stale: reading the
records removes it instead of showing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "REGISTRY_DIR",
    "ProcessRecord",
    "forget",
    "live_records",
    "process_started",
    "record",
    "registered",
    "sidecar_path",
    "sweep",
]

REGISTRY_DIR = Path(".deploy/processes")


@dataclass(frozen=True)
class ProcessRecord:
    """One local process ``deploy`` started and still owns."""

    mode: str
    pid: int
    port: int | None
    log: str | None
    command: str
    started: float  # the process's own start time: a reused pid has another one

    @property
    def path(self) -> Path:
        """Return the record's file name (relative to the registry folder)."""
        return Path(f"{self.mode}-{self.pid}.json")

    def sidecar(self, kind: str, folder: Path = REGISTRY_DIR) -> Path:
        """Return the path of a file that talks to this process (``kind``: its suffix)."""
        return sidecar_path(self.mode, self.pid, kind, folder)


def sidecar_path(mode: str, pid: int, kind: str, folder: Path = REGISTRY_DIR) -> Path:
    """Return a file next to a process's record for talking to it (``kind`` is never json)."""
    return folder / f"{mode}-{pid}.{kind}"


def process_started(pid: int) -> float | None:
    """Return when ``pid`` started (seconds since boot, Linux /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): only existence can be checked
        return _exists_without_proc(pid)
    # Field 22 (starttime, clock ticks); the name in field 2 may hold spaces or parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _exists_without_proc(pid: int) -> float | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0.0


def _alive(record: ProcessRecord) -> bool:
    started = process_started(record.pid)
    if started is None:
        return False
    # 0.0: no /proc, existence is all we know; otherwise the start time must be the recorded one.
    return started == 0.0 or abs(started - record.started) < 0.05


def record(
    mode: str,
    port: int | None,
    log: Path | None,
    pid: int | None = None,
    command: str | None = None,
    folder: Path = REGISTRY_DIR,
) -> Path | None:
    """Record a running process (default: this one); return the record, None if unwritable."""
    pid = os.getpid() if pid is None else pid
    started = process_started(pid)
    entry = ProcessRecord(
        mode=mode,
        pid=pid,
        port=port,
        log=str(log.resolve()) if log is not None else None,
        command=command or _typed_command(),
        started=started if started is not None else time.time(),
    )
    path = folder / entry.path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps(asdict(entry)))
        staged.replace(path)  # a reader never sees half a record
    except OSError as exc:  # a read-only folder costs the status line, not the service
        print(f"· cannot record this process under {folder}: {exc.strerror}", file=sys.stderr)
        return None
    return path


def forget(path: Path | None) -> None:
    """Remove a record written by :func:`record` (a no-op for None)."""
    if path is not None:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def registered(
    mode: str, port: int | None, log: Path | None, folder: Path = REGISTRY_DIR
) -> Iterator[Path | None]:
    """Record this process while the block runs; remove the record after."""
    path = record(mode, port, log, folder=folder)
    try:
        yield path
    finally:
        forget(path)


def sweep(folder: Path = REGISTRY_DIR) -> tuple[list[ProcessRecord], list[ProcessRecord]]:
    """Return the records of running processes and the stale ones, deleting the stale files."""
    live: list[ProcessRecord] = []
    stale: list[ProcessRecord] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = ProcessRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            continue  # its process removed it while we listed
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # unreadable: no process can be found from it
            continue
        if _alive(entry):
            live.append(entry)
        else:
            path.unlink(missing_ok=True)
            for sidecar in folder.glob(f"{entry.mode}-{entry.pid}.*"):  # its control files too
                sidecar.unlink(missing_ok=True)
            stale.append(entry)
    return live, stale


def live_records(folder: Path = REGISTRY_DIR) -> list[ProcessRecord]:
    """Return the records of processes still running; delete the stale ones."""
    return sweep(folder)[0]


def _typed_command() -> str:
    """Return the command line as the user typed it (``deploy web --port 9877``)."""
    name = Path(sys.argv[0]).name if sys.argv else "deploy"
    return shlex.join(["deploy" if name == "deploy" else name, *sys.argv[1:]])
