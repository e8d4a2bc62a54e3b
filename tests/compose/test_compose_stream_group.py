"""A consumer group in compose: two consumer containers share four shards (marker docker).

The consumers keep their leases and checkpoints in the emulator's DynamoDB, so containers on
one network share the shards the way hosts would; ``deploy status`` reads that lease table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.compose.stack import Stack
from deploy_modes.compose.stacks import StreamStack, up_stream
from deploy_modes.compose.status import lease_rows, overview
from deploy_modes.core.storage import aws_client
from deploy_modes.stream.rides import generated_rides, read_predictions, send_rides

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

RIDES = 400


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1.0)


def _predicted(kinesis: Any) -> set[int]:
    return {int(e["prediction"]["ride_id"]) for e in read_predictions(kinesis, "ride_predictions")}


def test_two_consumer_containers_share_four_shards_and_down_removes_them(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deploy_cli: Callable[..., Any],
) -> None:
    monkeypatch.chdir(tmp_path)
    stack = Stack("stream")
    try:
        up_stream(StreamStack(model=str(model_dir), shards=4, consumers=2))
        consumers = [s for s in stack.containers() if s.service == "consumer" and not s.oneoff]
        assert len(consumers) == 2 and all(s.healthy for s in consumers)
        endpoint = f"http://127.0.0.1:{stack.published_port('emulator', 4566)}"
        kinesis = aws_client("kinesis", endpoint)
        send_rides(kinesis, "ride_events", generated_rides(RIDES, seed=61))
        _wait_for(lambda: _predicted(kinesis) >= set(range(1, RIDES + 1)), "every prediction")

        def shard_owners() -> dict[str, str]:
            rows = [r for r in lease_rows(overview()) if r.source == endpoint]
            return {r.shard: r.owner for r in rows if r.stream == "ride_events"}

        # Both containers hold leases (2 + 2 once balanced), read from the emulator's table.
        _wait_for(
            lambda: (
                sorted(list(shard_owners().values()).count(o) for o in set(shard_owners().values()))
                == [2, 2]
            ),
            "two consumers holding two leases each",
            timeout=60,
        )
        owners = shard_owners()
        assert len(owners) == 4 and "(free)" not in owners.values()
        status = deploy_cli(["status"], cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert f"stream leases ({endpoint})" in status.stdout
        assert all(owner in status.stdout for owner in owners.values())
    finally:
        down = deploy_cli(["down", "stream"], cwd=tmp_path)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"{stack.project}: removed" in down.stdout + down.stderr
    assert stack.containers() == []
