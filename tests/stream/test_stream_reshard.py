"""A shard split while a real ``deploy stream consume`` process runs, on the real moto server.

What moto 5 does on SplitShard (checked first, so a moto that changes fails loudly here): the
parent gets an ``EndingSequenceNumber`` and the children list it as ``ParentShardId``, but
later puts still land in the parent (beyond its ending number) and GetRecords on the parent
never returns ``NextShardIterator: None``, so the parent is never read to SHARD_END and the
children stay empty. The test therefore proves what moto lets it prove: the split is noticed,
the children's leases are created with their parents and *not* taken while the parent is
unfinished, every ride is predicted, and per-partition-key order holds in the output. The
step "parent at SHARD_END -> children taken" is tested on the lease taker
(``test_stream_leases.py``) because moto never produces it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import ride_bytes

from deploy_modes.launch.processes import ManagedProcess
from deploy_modes.stream.kinesis import ensure_streams, list_shards
from deploy_modes.stream.leases import SQLiteLeases
from deploy_modes.stream.rides import read_predictions
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

DEPLOY = str(Path(sys.executable).parent / "deploy")
KEYS = 8  # partition keys; ride i has key i % KEYS, so each key's ride ids increase
RIDES = 1200


def _consumer(settings: StreamSettings, model_dir: Path, tmp_path: Path) -> ManagedProcess:
    env = {
        "DEPLOY_STREAM_ENDPOINT_URL": str(settings.endpoint_url),
        "DEPLOY_STREAM_INPUT_STREAM": settings.input_stream,
        "DEPLOY_STREAM_OUTPUT_STREAM": settings.output_stream,
        "DEPLOY_STREAM_DLQ_STREAM": settings.dlq_stream,
        "DEPLOY_STREAM_CHECKPOINT_PATH": str(settings.checkpoint_path),
        "DEPLOY_STREAM_BATCH_SIZE": "40",
        "DEPLOY_STREAM_POLL_INTERVAL": "0.05",
        "DEPLOY_STREAM_SHARD_REFRESH": "1",  # notice the split within a second
        "DEPLOY_MODEL_LOCATION": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "consumer.log"
    return ManagedProcess("consumer", [DEPLOY, "stream", "consume"], env=env, log_path=log)


def _send(kinesis: Any, stream: str, first: int, last: int) -> None:
    """Put rides ``first..last`` in order, 20 per call, keyed by ``ride_id % KEYS``."""
    for start in range(first, last + 1, 20):
        ids = range(start, min(start + 20, last + 1))
        records = [
            {"Data": ride_bytes(130, 205, 1.0 + i % 7, i), "PartitionKey": f"key-{i % KEYS}"}
            for i in ids
        ]
        response = kinesis.put_records(StreamName=stream, Records=records)
        assert not response.get("FailedRecordCount")
        time.sleep(0.02)


def _wait_for(condition: Callable[[], bool], what: str, process: ManagedProcess) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        assert process.poll() is None, f"consumer exited early:{process.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:{process.tail(20)}")
        time.sleep(0.2)


def _ride_ids(kinesis: Any, stream: str) -> list[int]:
    return [int(event["prediction"]["ride_id"]) for event in read_predictions(kinesis, stream)]


def test_a_split_mid_run_keeps_every_ride_and_per_key_order(
    kinesis: Any, make_streams: Any, model_dir: Path, tmp_path: Path
) -> None:
    settings: StreamSettings = make_streams(2)
    # One output shard: its order is the order the consumer put the predictions in.
    output = f"{settings.output_stream}_one"
    ensure_streams(kinesis, [output], 1, say=lambda message: None)
    settings = settings.model_copy(update={"output_stream": output})
    consumer = _consumer(settings, model_dir, tmp_path)
    try:
        sender = threading.Thread(target=_send, args=(kinesis, settings.input_stream, 1, 600))
        sender.start()
        _wait_for(lambda: len(_ride_ids(kinesis, output)) >= 200, "predictions", consumer)
        parent = list_shards(kinesis, settings.input_stream)[0]
        kinesis.split_shard(
            StreamName=settings.input_stream,
            ShardToSplit=parent.shard_id,
            NewStartingHashKey=str(2**126),  # the middle of shard 0's hash key range
        )
        sender.join(60)
        _send(kinesis, settings.input_stream, 601, RIDES)
        _wait_for(lambda: len(set(_ride_ids(kinesis, output))) >= RIDES, "every ride", consumer)
        leases = SQLiteLeases(settings.lease_file, "default", settings.input_stream).list()
        assert consumer.stop(sig=signal.SIGTERM) == 0
    finally:
        consumer.stop()

    shards = {s.shard_id: s for s in list_shards(kinesis, settings.input_stream)}
    children = [s for s in shards.values() if s.parent_shard_id == parent.shard_id]
    assert shards[parent.shard_id].closed and len(children) == 2  # the split happened
    # The consumer saw the children and made their leases wait for the parent.
    by_shard = {lease.shard_id: lease for lease in leases}
    for child in children:
        lease = by_shard[child.shard_id]
        assert lease.parents == (parent.shard_id,)
        assert lease.owner is None  # moto never ends the parent, so the children wait
    assert not by_shard[parent.shard_id].finished

    found = _ride_ids(kinesis, output)
    assert sorted(set(found)) == list(range(1, RIDES + 1))  # none lost
    for key in range(KEYS):
        # Repeats (a re-read after a hand-over) may interleave; first sightings stay in order.
        firsts = list(dict.fromkeys(i for i in found if i % KEYS == key))
        assert firsts == sorted(firsts), f"key-{key} out of order"
    log = (tmp_path / "consumer.log").read_text()
    assert "lost the lease" not in log
