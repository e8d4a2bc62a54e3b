"""A consumer group of real ``deploy stream consume --group`` processes on the real moto server.

Three consumers share four shards through leases in one SQLite file; one is SIGKILLed while
rides arrive: every ride is predicted, duplicates stay within one batch per lease hand-over,
and its shards are taken over by the others. A graceful stop releases the leases at once.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import predictions_by_id

from deploy_modes.compose.status import LeaseRow, Overview, ServiceRow, lease_rows
from deploy_modes.launch.emulator import Emulator
from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.stream.leases import Lease, SQLiteLeases
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

BATCH = 40
DEPLOY = str(Path(sys.executable).parent / "deploy")  # the venv's console script


def _consumer(
    settings: StreamSettings,
    model_dir: Path,
    tmp_path: Path,
    name: str,
    lease_timeout: float,
    extra: dict[str, str] | None = None,
) -> ManagedProcess:
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": str(settings.endpoint_url),
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": settings.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
        "DEPLOY_STREAM_LEASE_PATH": str(tmp_path / "leases.sqlite"),
        "DEPLOY_STREAM_BATCH_SIZE": str(BATCH),
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
    args = [DEPLOY, "stream", "consume", "--group", "--lease-timeout", str(lease_timeout)]
    return ManagedProcess(name, args, env=env, log_path=tmp_path / f"{name}.log")


def _leases(settings: StreamSettings, tmp_path: Path) -> list[Lease]:
    return SQLiteLeases(tmp_path / "leases.sqlite", "default", settings.input_stream).list()


def _wait_for(condition: Callable[[], bool], what: str, processes: list[ManagedProcess]) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        for process in processes:
            assert process.poll() is None, f"{process.name} exited early:{process.tail()}"
        if time.monotonic() > deadline:
            tails = "".join(process.tail(15) for process in processes)
            pytest.fail(f"timed out waiting for {what}:{tails}")
        time.sleep(0.2)


def _owner(process: ManagedProcess) -> str:
    return f"-{process.popen.pid}"


def _takeovers(logs: list[Path]) -> int:
    return sum(len(re.findall(r"took the lease of \S+ from ", log.read_text())) for log in logs)


def test_three_consumers_share_four_shards_and_survive_a_sigkill(
    kinesis: Any, make_streams: Any, model_dir: Path, tmp_path: Path
) -> None:
    settings: StreamSettings = make_streams(4)
    rides = generated_rides(3000, seed=51)
    consumers = [
        _consumer(settings, model_dir, tmp_path, f"c{i}", lease_timeout=2) for i in range(3)
    ]
    sending = threading.Thread(
        target=send_rides, args=(kinesis, settings.input_stream, rides, 300.0)
    )
    try:
        _wait_for(
            lambda: len({lease.owner for lease in _leases(settings, tmp_path)} - {None}) == 3,
            "the three consumers to hold leases",
            consumers,
        )
        sending.start()
        _wait_for(
            lambda: len(predictions_by_id(kinesis, settings.output_stream)) >= 600,
            "the first predictions",
            consumers,
        )
        victim = next(
            c
            for c in consumers
            if any((lease.owner or "").endswith(_owner(c)) for lease in _leases(settings, tmp_path))
        )
        victim_shards = {
            lease.shard_id
            for lease in _leases(settings, tmp_path)
            if (lease.owner or "").endswith(_owner(victim))
        }
        victim.kill()  # SIGKILL: no release, no checkpoint of the batch in flight
        survivors = [c for c in consumers if c is not victim]
        sending.join(60)
        _wait_for(
            lambda: len(predictions_by_id(kinesis, settings.output_stream)) >= 3000,
            "every ride",
            survivors,
        )
        held = {lease.shard_id: lease.owner for lease in _leases(settings, tmp_path)}
        assert all(not (owner or "").endswith(_owner(victim)) for owner in held.values())
        assert victim_shards and all(held[shard] for shard in victim_shards)  # taken over
        codes = [c.stop(sig=signal.SIGTERM) for c in survivors]
    finally:
        if sending.is_alive():
            sending.join(60)
        for consumer in consumers:
            consumer.stop()
    assert codes == [0, 0]
    assert all(lease.owner is None for lease in _leases(settings, tmp_path))  # released
    found = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(found) == list(range(1, 3001))  # none lost
    assert all(len(set(durations)) == 1 for durations in found.values())
    repeated = sum(len(durations) - 1 for durations in found.values())
    # Each lease that changed hands repeats at most the batch its old owner had in flight.
    takeovers = _takeovers([tmp_path / f"c{i}.log" for i in range(3)])
    assert takeovers >= len(victim_shards)
    assert repeated <= BATCH * takeovers


def test_a_graceful_stop_hands_the_shards_over_without_waiting_for_the_timeout(
    kinesis: Any, make_streams: Any, model_dir: Path, tmp_path: Path
) -> None:
    settings: StreamSettings = make_streams(4)
    # A lease timeout far beyond the wait below: only a release can explain the hand-over.
    first = _consumer(settings, model_dir, tmp_path, "first", lease_timeout=600)
    second = None
    try:
        _wait_for(
            lambda: (
                all(lease.owner for lease in _leases(settings, tmp_path))
                and len(_leases(settings, tmp_path)) == 4
            ),
            "the first consumer to hold every lease",
            [first],
        )
        second = _consumer(settings, model_dir, tmp_path, "second", lease_timeout=600)
        _wait_for(
            lambda: "reading shardId" in (tmp_path / "second.log").read_text(),
            "the second consumer to steal a lease",
            [first, second],
        )
        assert first.stop(sig=signal.SIGTERM) == 0
        _wait_for(
            lambda: all(
                (lease.owner or "").endswith(_owner(second))
                for lease in _leases(settings, tmp_path)
            ),
            "the second consumer to hold every lease",
            [second],
        )
        send_rides(kinesis, settings.input_stream, generated_rides(200, seed=52))
        _wait_for(
            lambda: len(predictions_by_id(kinesis, settings.output_stream)) >= 200,
            "200 predictions",
            [second],
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert "released the lease" in (tmp_path / "first.log").read_text()
    found = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(found) == list(range(1, 201))


def _status_rows(settings: StreamSettings, rows: list[LeaseRow]) -> dict[str, LeaseRow]:
    return {row.shard: row for row in rows if row.stream == settings.input_stream}


def test_status_shows_who_holds_which_shard_in_sqlite_and_dynamodb(
    kinesis: Any, make_streams: Any, model_dir: Path, tmp_path: Path, moto_server: Emulator
) -> None:
    settings: StreamSettings = make_streams(4)
    table = f"leases_{settings.input_stream}"
    dynamo = {
        "DEPLOY_STREAM_CHECKPOINT_STORE": "dynamodb",
        "DEPLOY_STREAM_LEASE_TABLE": table,
        "DEPLOY_STREAM_CHECKPOINT_TABLE": f"checkpoints_{settings.input_stream}",
    }
    # Two consumers in the SQLite lease file, two others (another name) in DynamoDB on moto.
    consumers = [
        _consumer(settings, model_dir, tmp_path, f"s{i}", lease_timeout=5) for i in range(2)
    ] + [
        _consumer(
            settings,
            model_dir,
            tmp_path,
            f"d{i}",
            lease_timeout=5,
            extra={**dynamo, "DEPLOY_STREAM_CONSUMER_NAME": "dyn"},
        )
        for i in range(2)
    ]
    dynamo_settings = settings.model_copy(
        update={"lease_table": table, "checkpoint_table": dynamo["DEPLOY_STREAM_CHECKPOINT_TABLE"]}
    )
    emulator = ServiceRow("stream", "local", "emulator", "running", "answers", moto_server.url[7:])
    found = Overview(rows=[emulator], engine_note=None)

    def balanced(source: str) -> bool:
        rows = [r for r in lease_rows(found, dynamo_settings) if r.source == source]
        owners = Counter(r.owner for r in _status_rows(settings, rows).values())
        return sorted(owners.values()) == [2, 2] and "(free)" not in owners

    try:
        _wait_for(lambda: balanced(str(settings.lease_file)), "SQLite leases 2+2", consumers)
        _wait_for(lambda: balanced(moto_server.url), "DynamoDB leases 2+2", consumers)
        send_rides(kinesis, settings.input_stream, generated_rides(200, seed=53))
        _wait_for(
            lambda: all(
                r.checkpoint != "-"
                for r in lease_rows(found, dynamo_settings)
                if r.stream == settings.input_stream
            ),
            "every shard checkpointed in both groups",
            consumers,
        )
        rows = lease_rows(found, dynamo_settings)
        pids = {f"-{c.popen.pid}": c.name for c in consumers}
    finally:
        for consumer in consumers:
            consumer.stop(sig=signal.SIGTERM)
    local = _status_rows(settings, [r for r in rows if r.source == str(settings.lease_file)])
    remote = _status_rows(settings, [r for r in rows if r.source == moto_server.url])
    assert sorted(local) == sorted(remote) == [f"shardId-00000000000{i}" for i in range(4)]
    assert {r.group for r in local.values()} == {"default"}
    assert {r.group for r in remote.values()} == {"dyn"}
    # Owners are host-pid: each names one of the real processes of that group.
    assert {pids[o[o.rindex("-") :]] for o in (r.owner for r in local.values())} == {"s0", "s1"}
    assert {pids[o[o.rindex("-") :]] for o in (r.owner for r in remote.values())} == {"d0", "d1"}
    for row in [*local.values(), *remote.values()]:
        assert row.counter >= 1 and int(row.checkpoint) > 0
        assert float(row.age.removesuffix(" s")) < 30  # renewed while it ran
    # The SIGTERMed consumers released their leases: status says the shards are free.
    after = lease_rows(found, dynamo_settings)
    assert {r.owner for r in after if r.stream == settings.input_stream} == {"(free)"}
