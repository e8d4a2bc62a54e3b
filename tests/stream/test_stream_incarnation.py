"""Checkpoints bound to the stream incarnation, on the real moto server.

A stream deleted and created again (or an emulator restarted with fresh state) reuses the
names, and its sequence numbers start over: a consumer that resumed "after" its old
checkpoints skipped every new ride. These tests fail when it does.
"""

from __future__ import annotations

from typing import Any

import pytest
from stream_helpers import predictions_by_id

from deploy_modes.core.storage import aws_client
from deploy_modes.stream.checkpoints import SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import ensure_streams, list_shard_ids, stream_incarnation
from deploy_modes.stream.leases import SHARD_END, LeaseCoordinator, SQLiteLeases
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration


def _consumer(
    service: StreamService, settings: StreamSettings, lines: list[str], me: str | None = None
) -> Consumer:
    """Return a consumer; with ``me``, a member of the group (leases beside the checkpoints)."""
    leases = None
    if me is not None:
        table = SQLiteLeases(settings.lease_file, settings.consumer_name, settings.input_stream)
        leases = LeaseCoordinator(table, me, settings.lease_timeout, lines.append)
    return Consumer(
        service,
        aws_client("kinesis", settings.endpoint_url),
        SQLiteCheckpoints(settings.checkpoint_path),
        settings,
        lines.append,
        leases,
    )


def _drain(consumer: Consumer) -> int:
    total = 0
    while handled := consumer.poll_once():
        total += handled
    assert consumer.failing is None
    return total


def _recreate(kinesis: Any, stream: str, shards: int) -> None:
    kinesis.delete_stream(StreamName=stream)
    kinesis.get_waiter("stream_not_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    ensure_streams(kinesis, [stream], shards, say=lambda message: None)


def test_a_recreated_input_stream_is_read_from_trim_horizon_after_a_restart(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(2)
    send_rides(kinesis, settings.input_stream, generated_rides(300, seed=11))
    first_lines: list[str] = []
    assert _drain(_consumer(stream_service, settings, first_lines)) == 300
    # Far fewer new rides than old: every new sequence number is below the old checkpoints.
    _recreate(kinesis, settings.input_stream, 2)
    send_rides(kinesis, settings.input_stream, generated_rides(40, seed=12, first_id=1001))

    lines: list[str] = []
    restarted = _consumer(stream_service, settings, lines)
    assert _drain(restarted) == 40
    found = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(k for k in found if k > 1000) == list(range(1001, 1041))
    assert all(len(durations) == 1 for durations in found.values())
    notices = [line for line in lines if "earlier incarnation" in line]
    assert len(notices) == 2  # one line per shard that had a checkpoint
    assert all("reading it from TRIM_HORIZON" in line for line in notices)


def test_a_running_consumer_notices_the_stream_was_created_again(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(1)
    send_rides(kinesis, settings.input_stream, generated_rides(100, seed=13))
    lines: list[str] = []
    consumer = _consumer(stream_service, settings, lines)
    assert _drain(consumer) == 100
    _recreate(kinesis, settings.input_stream, 1)
    send_rides(kinesis, settings.input_stream, generated_rides(30, seed=14, first_id=2001))
    consumer.refresh_shards()  # what the periodic shard refresh does
    assert _drain(consumer) == 30
    found = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(k for k in found if k > 2000) == list(range(2001, 2031))
    assert any("was created again" in line for line in lines)
    assert any("earlier incarnation" in line for line in lines)


def test_a_valid_checkpoint_still_resumes_without_repeating(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(2)
    send_rides(kinesis, settings.input_stream, generated_rides(120, seed=15))
    assert _drain(_consumer(stream_service, settings, [])) == 120
    send_rides(kinesis, settings.input_stream, generated_rides(10, seed=15, first_id=501))
    lines: list[str] = []
    assert _drain(_consumer(stream_service, settings, lines)) == 10
    assert not any("TRIM_HORIZON" in line for line in lines)
    assert sum(line.count("reading shardId") for line in lines) == len(
        list_shard_ids(kinesis, settings.input_stream)
    )


def _group_table(settings: StreamSettings) -> SQLiteLeases:
    return SQLiteLeases(settings.lease_file, settings.consumer_name, settings.input_stream)


def test_a_recreated_stream_does_not_inherit_the_groups_leases(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(2)
    send_rides(kinesis, settings.input_stream, generated_rides(200, seed=16))
    first_lines: list[str] = []
    first = _consumer(stream_service, settings, first_lines, me="first")
    assert _drain(first) == 200
    old = stream_incarnation(kinesis, settings.input_stream)
    table = _group_table(settings)
    # What the old stream's leases look like after a reshard closed shard 0 and it was read
    # to its end (moto never ends a closed shard, see test_stream_reshard.py), and after a
    # SIGKILL of the holder of shard 1: neither may carry over to the new stream.
    zero, one = table.list()
    assert (zero.incarnation, one.incarnation) == (old, old)
    assert table.write(
        zero, zero.__class__(zero.shard_id, None, zero.counter + 1, SHARD_END, (), old)
    )
    _recreate(kinesis, settings.input_stream, 2)
    send_rides(kinesis, settings.input_stream, generated_rides(40, seed=17, first_id=1001))

    lines: list[str] = []
    # A lease timeout far beyond the test: only the reset can explain taking shard 1 at once.
    slow = settings.model_copy(update={"lease_timeout": 600.0})
    restarted = _consumer(stream_service, slow, lines, me="second")
    assert _drain(restarted) == 40
    found = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(k for k in found if k > 1000) == list(range(1001, 1041))
    assert all(len(durations) == 1 for durations in found.values())
    new = stream_incarnation(kinesis, settings.input_stream)
    assert all(
        (lease.incarnation, lease.owner, lease.checkpoint) == (new, "second", None)
        for lease in table.list()
    )
    assert sum("reset the lease" in line for line in lines) == 2


def test_a_consumer_with_a_stale_listing_does_not_undo_a_newer_reset(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(1)
    stale = _consumer(stream_service, settings, [], me="stale")
    assert _drain(stale) == 0  # holds shard 0 of the first incarnation
    _recreate(kinesis, settings.input_stream, 1)
    send_rides(kinesis, settings.input_stream, generated_rides(20, seed=18, first_id=3001))
    fresh = _consumer(
        stream_service, settings.model_copy(update={"lease_timeout": 1.0}), [], me="fresh"
    )
    fresh.refresh_shards()  # resets the lease to the new incarnation (and may take it later)
    new = stream_incarnation(kinesis, settings.input_stream)
    assert [lease.incarnation for lease in _group_table(settings).list()] == [new]
    assert stale.leases is not None
    stale._sync_leases()  # its listing is from before the recreate: it must not reset back
    assert [lease.incarnation for lease in _group_table(settings).list()] == [new]
    assert stale.leases.newer_incarnation == new
    assert stale.readers == {}  # it lost the lease it held on the old stream


def test_a_consumer_started_before_the_first_ride_checkpoints_a_resumable_start(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    """moto lists an empty shard as starting at 0, and at its first ride once it has one.

    The start a checkpoint is bound to is the one listed after the first rides were read:
    the empty shard's 0 would make the restart call its own checkpoint foreign and read
    every ride again.
    """
    settings: StreamSettings = make_streams(2)
    first = _consumer(stream_service, settings, [])
    assert first.poll_once() == 0 and len(first.readers) == 2  # both shards open, empty
    send_rides(kinesis, settings.input_stream, generated_rides(60, seed=17))
    assert _drain(first) == 60
    send_rides(kinesis, settings.input_stream, generated_rides(10, seed=17, first_id=501))
    lines: list[str] = []
    assert _drain(_consumer(stream_service, settings, lines)) == 10  # only the new rides
    assert not any("TRIM_HORIZON" in line for line in lines), lines
    found = predictions_by_id(kinesis, settings.output_stream)
    assert len(found) == 70 and all(len(durations) == 1 for durations in found.values())
