"""What runs where (``deploy status``), a stack's logs, and tearing stacks down."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deploy_modes.compose.replicas import replica_number, replica_rows
from deploy_modes.compose.runtime import docker_engine_answers
from deploy_modes.compose.stack import MODES, Stack, docker_client
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.emulator import DEFAULT_EMULATOR_PORT, is_emulator
from deploy_modes.launch.processes import http_ok
from deploy_modes.launch.registry import ProcessRecord, live_records, process_started, sweep
from deploy_modes.launch.terminal import say
from deploy_modes.web.settings import DEFAULT_PORT

if TYPE_CHECKING:
    from deploy_modes.stream.leases import StoredLease
    from deploy_modes.stream.settings import StreamSettings

__all__ = [
    "LOCAL_PROBES",
    "LeaseRow",
    "Overview",
    "ServiceRow",
    "down",
    "lease_rows",
    "local_rows",
    "logs",
    "overview",
    "pick_modes",
]

# What `deploy status` probes for services started without compose (`deploy web`, moto).
LOCAL_PROBES = {
    "web": f"http://127.0.0.1:{DEFAULT_PORT}/health",
    "emulator": f"http://127.0.0.1:{DEFAULT_EMULATOR_PORT}",
}


@dataclass(frozen=True)
class ServiceRow:
    """One line of ``deploy status``."""

    mode: str
    runtime: str
    service: str
    state: str
    health: str
    ports: str
    model: str = ""  # the model version a web container serves ("-": it does not answer)


@dataclass(frozen=True)
class Overview:
    """Every service found, and why only local ones were checked (no engine), if so."""

    rows: list[ServiceRow]
    engine_note: str | None
    stale: list[str] = field(default_factory=list)  # records of processes gone, now removed


def pick_modes(mode: str | None, every: bool) -> list[str]:
    """Return the modes a command names (one, or all with ``--all``), refusing anything else."""
    if mode and every:
        raise DeployError("name a mode or pass --all, not both")
    if every:
        return list(MODES)
    if not mode:
        raise DeployError(f"name a mode ({', '.join(MODES)}) or pass --all")
    if mode not in MODES:
        raise DeployError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return [mode]


def _answers(service: str, url: str) -> bool:
    return is_emulator(url) if service == "emulator" else http_ok(url)


def overview() -> Overview:
    """Return the compose containers of every mode and the local services that answer."""
    rows: list[ServiceRow] = []
    answers, why = docker_engine_answers()
    published: set[str] = set()
    if answers:
        client = docker_client()
        try:
            for mode in MODES:
                stack = Stack(mode)
                # Each web container's own /ready names its version (replicas may differ mid-roll).
                served = (
                    {r.state.name: r for r in replica_rows(stack, client)} if mode == "web" else {}
                )
                scaled = len(served) > 1
                for state in stack.containers(client):
                    if state.oneoff:
                        continue
                    published.update(
                        p.split("->")[0].rsplit(":", 1)[-1] for p in state.ports.split(", ")
                    )
                    health = state.health or ("-" if state.status == "running" else "")
                    if state.status == "exited":
                        health = f"exit {state.exit_code}"
                    replica = served.get(state.name)
                    service = state.service
                    if replica is not None and scaled:
                        service = f"{service} #{replica_number(state.name)}"
                    rows.append(
                        ServiceRow(
                            mode,
                            "compose",
                            service,
                            state.status,
                            health,
                            state.ports,
                            replica.version if replica else "",
                        )
                    )
        finally:
            client.close()
    recorded, stale = local_rows()
    rows.extend(recorded)
    published.update(row.ports.rsplit(":", 1)[-1] for row in recorded)
    for service, url in LOCAL_PROBES.items():
        port = str(urlsplit(url).port)
        if port not in published and _answers(service, url):
            mode = "web" if service == "web" else "batch/stream"
            rows.append(
                ServiceRow(mode, "local", service, "running", "answers", f"127.0.0.1:{port}")
            )
    return Overview(rows=rows, engine_note=None if answers else why, stale=stale)


# The local part: processes `deploy` started from this folder, found through their records.
_LOCAL_HEALTH = {"web": "http://127.0.0.1:{port}/health", "emulator": "http://127.0.0.1:{port}"}


def local_rows() -> tuple[list[ServiceRow], list[str]]:
    """Return a row per recorded local process, and a note per stale record removed."""
    live, stale = sweep()
    rows = [_local_row(entry) for entry in live]
    notes = [_stale_note(entry) for entry in stale]
    return rows, notes


def _stale_note(entry: ProcessRecord) -> str:
    note = f"removed the record of `{entry.command}` (pid {entry.pid}): that process is gone"
    probe = _LOCAL_HEALTH.get(entry.mode)
    if probe and entry.port and _answers(entry.mode, probe.format(port=entry.port)):
        # A killed `deploy web` cannot stop its gunicorn: say so rather than hide it.
        note += f", but 127.0.0.1:{entry.port} still answers (a child it left behind?)"
    return note


def _local_row(entry: ProcessRecord) -> ServiceRow:
    health = "-"
    probe = _LOCAL_HEALTH.get(entry.mode)
    if probe and entry.port:
        health = "answers" if _answers(entry.mode, probe.format(port=entry.port)) else "no answer"
    ports = f"127.0.0.1:{entry.port}" if entry.port else ""
    mode = "batch/stream" if entry.mode == "emulator" else entry.mode
    return ServiceRow(mode, "local", entry.command, f"running (pid {entry.pid})", health, ports)


@dataclass(frozen=True)
class LeaseRow:
    """One shard lease of a stream consumer group, for ``deploy status``."""

    source: str  # the SQLite lease file, or the emulator whose DynamoDB holds the table
    group: str
    stream: str
    shard: str
    owner: str
    counter: int
    checkpoint: str
    age: str  # since the lease was last written (renewed, taken, checkpointed, released)


def _age(updated: float, now: float) -> str:
    return f"{max(0.0, now - updated):.1f} s" if updated else "-"


def _sqlite_checkpoints(path: Path) -> Any:
    from deploy_modes.stream.checkpoints import SQLiteCheckpoints

    return SQLiteCheckpoints(path) if path.is_file() else None


def _rows(source: str, stored: list[StoredLease], checkpoints: Any, now: float) -> list[LeaseRow]:
    rows = []
    for item in stored:
        lease = item.lease
        checkpoint = lease.checkpoint  # SHARD_END once a closed shard was read to its end
        if checkpoint is None and checkpoints is not None:
            found = checkpoints.get(item.group, item.stream, lease.shard_id)
            checkpoint = found.sequence if found else None
        rows.append(
            LeaseRow(
                source,
                item.group,
                item.stream,
                lease.shard_id,
                lease.owner or "(free)",
                lease.counter,
                checkpoint or "-",
                _age(lease.updated, now),
            )
        )
    return rows


def _emulator_urls(found: Overview) -> list[str]:
    """Return the loopback URLs of the emulators ``deploy status`` found (local or compose)."""
    urls = []
    for row in found.rows:
        if row.service == "emulator" and row.ports:
            port = row.ports.split(", ")[0].split("->")[0].rsplit(":", 1)[-1]
            if port.isdigit():
                urls.append(f"http://127.0.0.1:{port}")
    return urls


def lease_rows(
    found: Overview, settings: StreamSettings | None = None, notes: list[str] | None = None
) -> list[LeaseRow]:
    """Return who holds which shard: the local lease file and the emulators' lease tables.

    Read-only: a missing file or table means no group ran there, and nothing is created. An
    emulator that does not answer is named in ``notes`` (one line each), not skipped silently.
    """
    from deploy_modes.core.storage import aws_client, emulator_keys
    from deploy_modes.stream.checkpoints import DynamoCheckpoints
    from deploy_modes.stream.kinesis import client_config
    from deploy_modes.stream.leases import read_dynamo_leases, read_sqlite_leases
    from deploy_modes.stream.settings import StreamSettings

    settings = settings or StreamSettings()
    now = time.time()
    path = settings.lease_file
    local = _sqlite_checkpoints(settings.checkpoint_path)
    try:
        rows = _rows(str(path), read_sqlite_leases(path), local, now)
    finally:
        if local is not None:
            local.close()
    for url in _emulator_urls(found):
        # The region rule the consumers use; short timeouts: a stuck emulator must not hang us.
        client = aws_client("dynamodb", url, config=client_config(2.0, 5.0), **emulator_keys())
        try:
            stored = read_dynamo_leases(client, settings.lease_table)
            checkpoints = DynamoCheckpoints(client, settings.checkpoint_table, create=False)
            rows += _rows(url, stored, _Missing(checkpoints), now)
        except Exception as exc:
            if notes is None:
                raise
            notes.append(f"could not read the lease table at {url}: {exc}")
    return rows


class _Missing:
    """Checkpoints that read as none while their table does not exist (yet)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, consumer: str, stream: str, shard_id: str) -> Any:
        from deploy_modes.core.storage import aws_error_code

        try:
            return self.store.get(consumer, stream, shard_id)
        except Exception as exc:
            if aws_error_code(exc) == "ResourceNotFoundException":
                return None
            raise


def logs(mode: str, follow: bool = False, tail: int = 200) -> int:
    """Print a mode's logs: its local process's log file if one runs here, else its stack's."""
    pick_modes(mode, False)
    local = [entry for entry in live_records() if entry.mode == mode]
    if local:
        return _local_logs(local[-1], follow, tail)
    answers, why = docker_engine_answers()
    if not answers:
        # A local batch run is the `deploy batch` process itself: its output is its terminal's.
        local_hint = (
            "a local batch run prints to its own terminal and exits"
            if mode == "batch"
            else f"no local {mode} process runs from this folder (start one: deploy {mode})"
        )
        raise DeployError(f"{local_hint}, and no compose stack can run: {why}")
    stack = Stack(mode)
    if not stack.containers():
        raise DeployError(f"no {mode} stack exists: start it with deploy {mode} --runtime compose")
    args = ["logs", "--no-color", "--tail", str(tail)]
    return stack.passthrough(*args, *(["--follow"] if follow else []))


def _local_logs(entry: ProcessRecord, follow: bool, tail: int) -> int:
    """Print the last ``tail`` lines of a local process's log, then follow it while it runs."""
    if entry.log is None:
        raise DeployError(
            f"`{entry.command}` (pid {entry.pid}) prints to its own terminal and keeps no log file"
        )
    path = Path(entry.log)
    try:
        with path.open("rb") as log:
            lines = log.read().splitlines(keepends=True)[-tail:]
            sys.stdout.write(b"".join(lines).decode(errors="replace"))
            sys.stdout.flush()
            while follow:
                running = process_started(entry.pid) is not None
                chunk = log.read()  # after the check: a process's last words are read too
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                elif not running:
                    break
                else:
                    time.sleep(0.2)
    except OSError as exc:
        raise DeployError(f"cannot read the log {path}: {exc.strerror}") from exc
    except KeyboardInterrupt:
        return 130
    return 0


def down(modes: list[str]) -> None:
    """Remove the named modes' stacks (containers, network, volumes), saying what happened."""
    answers, why = docker_engine_answers()
    if not answers:
        say(f"{why}: no compose stack can be running")
        return
    failed = []
    for name in modes:
        stack = Stack(name)
        if not stack.containers():
            say(f"{stack.project}: nothing to remove")
            continue
        if stack.down() == 0:
            say(f"{stack.project}: removed")
        else:
            failed.append(stack.project)
    if failed:
        raise DeployError(f"could not remove {', '.join(failed)} (output above)")
