"""The consumer's pace on the real moto server: batch sizes, backoff, and when it reports.

Each figure here is one a user reads or relies on: at most ``batch_size`` rides are repeated
after a crash (at least one per shard), a failing endpoint is retried at 0.2, 0.4, 0.8 ... up
to 5 s, and the progress line is printed only when rides were handled.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest
from stream_helpers import MakeConsumer, dead_letters, predictions_by_id, ride_bytes

from deploy_modes.core.storage import aws_client
from deploy_modes.launch.processes import free_port
from deploy_modes.stream.checkpoints import SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import StreamError, ensure_streams, list_shard_ids
from deploy_modes.stream.leases import DynamoLeases, LeaseCoordinator
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration


def test_a_batch_smaller_than_the_shards_still_reads_one_ride_per_shard(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    settings: StreamSettings = make_streams(4).model_copy(update={"batch_size": 2})
    rides = generated_rides(40, seed=51)
    send_rides(kinesis, settings.input_stream, rides)
    consumer, _ = make_consumer(settings)
    sizes = []
    while handled := consumer.poll_once():
        sizes.append(handled)
    # 2 // 4 shards is 0: each shard still gives one ride a poll, never more.
    assert max(sizes) == 4 and sum(sizes) == 40
    assert sorted(predictions_by_id(kinesis, settings.output_stream)) == sorted(
        ride["ride_id"] for ride in rides
    )


def test_backoff_doubles_from_0_2_s_to_a_5_s_cap_and_resets_on_recovery(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    settings: StreamSettings = make_streams(1)
    send_rides(kinesis, settings.input_stream, generated_rides(5, seed=52))
    kinesis.delete_stream(StreamName=settings.output_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=settings.output_stream)
    consumer, lines = make_consumer(settings)
    assert consumer.backoff() == 0.0
    began = time.monotonic()
    waits = []
    for _ in range(7):
        assert consumer.poll_once() == 0  # read the 5 rides again, the put failed again
        waits.append(consumer.backoff())
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    ensure_streams(kinesis, [settings.output_stream], 1, say=lambda message: None)
    assert consumer.poll_once() == 5
    assert consumer.backoff() == 0.0 and consumer.failing is None
    (recovered,) = [line for line in lines if "recovered after" in line]
    seconds = float(recovered.split("recovered after ")[1].split(" s ")[0])
    # The line rounds to 0.1 s: allow half of that above the time measured around it.
    assert 0 <= seconds <= time.monotonic() - began + 0.05 and "(7 failed attempts)" in recovered


def test_an_idle_consumer_prints_no_progress_line(
    make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """Progress lines say what changed: nothing handled, nothing to say (every 5 s at most)."""
    settings: StreamSettings = make_streams(1).model_copy(update={"poll_interval": 0.05})
    consumer, lines = make_consumer(settings)
    stop = threading.Event()
    timer = threading.Timer(6.0, stop.set)  # past one 5 s reporting period
    timer.start()
    stats = consumer.run(stop)
    assert stats.records == 0
    progress = [line for line in lines if "stopped" not in line and "->" not in line]
    assert progress == [line for line in progress if "reading shardId" in line], lines


def test_a_busy_consumer_does_not_sleep_between_batches(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """The poll interval is for an idle stream: three full batches go through back to back."""
    settings: StreamSettings = make_streams(1).model_copy(
        update={"batch_size": 10, "poll_interval": 30.0}
    )
    send_rides(kinesis, settings.input_stream, generated_rides(30, seed=53))
    consumer, _ = make_consumer(settings)
    stop = threading.Event()
    timer = threading.Timer(5.0, stop.set)  # far less than one 30 s interval
    timer.start()
    stats = consumer.run(stop)
    assert (stats.records, stats.batches) == (30, 3)


def test_waiting_for_kinesis_at_start_is_said_once(
    make_consumer: MakeConsumer, make_streams: Any
) -> None:
    settings: StreamSettings = make_streams(1).model_copy(
        update={"endpoint_url": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    )
    consumer, lines = make_consumer(settings)
    where = re.escape(str(settings.endpoint_url))
    with pytest.raises(StreamError, match=rf"Kinesis at {where} did not answer within 3\.5 s"):
        consumer.start(threading.Event(), timeout=3.5)  # about four attempts, 1 s apart
    assert sum("waiting up to 3.5 s for Kinesis" in line for line in lines) == 1, lines


def test_a_lease_table_gone_mid_run_is_a_failure_state_not_a_crash(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    """Group member, DynamoDB leases on the moto server: the table vanishes, then comes back."""
    settings: StreamSettings = make_streams(2)
    dynamodb = aws_client("dynamodb", settings.endpoint_url)
    table = "pace_leases"

    def leases() -> DynamoLeases:
        return DynamoLeases(dynamodb, table, settings.consumer_name, settings.input_stream)

    lines: list[str] = []
    consumer = Consumer(
        stream_service,
        aws_client("kinesis", settings.endpoint_url),
        SQLiteCheckpoints(settings.checkpoint_path),
        settings,
        lines.append,
        LeaseCoordinator(leases(), "me", settings.lease_timeout, lines.append),
    )
    assert consumer.poll_once() == 0  # lists the shards, takes both leases
    assert len(consumer.readers) == 2
    dynamodb.delete_table(TableName=table)
    dynamodb.get_waiter("table_not_exists").wait(TableName=table)
    rides = generated_rides(20, seed=54)
    send_rides(kinesis, settings.input_stream, rides)
    assert consumer.poll_once() == 0  # syncing the leases failed: nothing read, nothing raised
    assert consumer.failing is not None and consumer.failing.startswith("syncing leases")
    leases()  # the table is back (empty): the consumer takes the leases again
    for _ in range(50):  # bounded: a consumer stuck failing fails the test below
        if not consumer.poll_once() and not consumer.failing:
            break
    assert sorted(predictions_by_id(kinesis, settings.output_stream)) == sorted(
        ride["ride_id"] for ride in rides
    )


def test_an_input_stream_gone_mid_run_is_a_failure_state_that_handled_nothing(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    settings: StreamSettings = make_streams(1).model_copy(update={"shard_refresh": 0.0})
    consumer, _ = make_consumer(settings)
    assert consumer.poll_once() == 0
    kinesis.delete_stream(StreamName=settings.input_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=settings.input_stream)
    assert consumer.poll_once() == 0  # listing failed: nothing handled, nothing raised
    assert consumer.failing is not None
    assert consumer.failing.startswith(f"listing {settings.input_stream}")
    assert "does not exist" in consumer.failing


def test_a_lease_taken_on_a_listing_older_than_its_first_ride_resumes_after_its_checkpoint(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """moto lists an empty shard with another start than once it has rides.

    Consumer B lists the shard while it is empty; A predicts and checkpoints a batch, then
    hands its lease over. B opens the shard from its old listing: the checkpoint's start
    differs, and B must list again rather than call the checkpoint foreign, read the shard
    from the start and predict A's batch twice.
    """
    settings: StreamSettings = make_streams(1).model_copy(update={"batch_size": 10})

    (first, _), (second, _) = make_consumer(settings, "a"), make_consumer(settings, "b")
    assert first.poll_once() == 0 and list(first.readers) != []  # A holds the only lease
    assert second.poll_once() == 0 and list(second.readers) == []  # B listed the empty shard
    rides = generated_rides(20, seed=55)
    send_rides(kinesis, settings.input_stream, rides)
    assert first.poll_once() == 10  # predicted and checkpointed
    assert first.leases is not None
    first.leases.release_all()
    while second.poll_once():
        pass
    delivered = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(delivered) == sorted(ride["ride_id"] for ride in rides)
    assert all(len(durations) == 1 for durations in delivered.values())


def test_start_opens_the_shards_and_the_stats_count_each_kind_of_record(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    settings: StreamSettings = make_streams(2)
    consumer, _ = make_consumer(settings)
    consumer.start(threading.Event(), timeout=5)
    assert sorted(consumer.readers) == sorted(list_shard_ids(kinesis, settings.input_stream))
    send_rides(kinesis, settings.input_stream, generated_rides(5, seed=56))
    bad = [ride_bytes(10, 50, "far", 9001), b"not json", ride_bytes(-3, 50, 2.0, 9002)]
    kinesis.put_records(
        StreamName=settings.input_stream,
        Records=[{"Data": data, "PartitionKey": str(n)} for n, data in enumerate(bad)],
    )
    while consumer.poll_once():
        pass
    stats = consumer.stats
    assert (stats.records, stats.predictions, stats.dead_letters) == (8, 5, 3)
    assert len(dead_letters(kinesis, settings.dlq_stream)) == 3
    assert "8 records: 5 predictions, 3 dead letters" in stats.line()


def test_a_busy_consumer_says_its_progress_at_most_every_5_s(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """Rides handled: a stats line once 5 s passed since the last one, not one per batch."""
    settings: StreamSettings = make_streams(1).model_copy(update={"batch_size": 10})
    send_rides(kinesis, settings.input_stream, generated_rides(30, seed=56))
    consumer, lines = make_consumer(settings)
    stop = threading.Event()
    began = time.monotonic()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        for _ in range(600):  # the line is due 5 s after the start; 60 s for a loaded machine
            if any("30 records: " in line for line in lines):
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(30)
    elapsed = time.monotonic() - began
    assert not thread.is_alive()
    progress = [line for line in lines if " records: " in line and "stopped" not in line]
    assert progress, lines
    assert progress[-1].endswith(
        "30 records: 30 predictions, 0 dead letters, 3 batches, 0 errors"
    ), lines
    # One line per 5 s at most, the first 5 s after the start: a bound load can only lower.
    assert len(progress) <= elapsed / 5, (progress, elapsed)


def test_an_idle_consumer_reads_once_per_poll_interval_and_lists_once_per_refresh(
    make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """An empty stream costs one GetRecords a shard per poll interval, not a busy loop."""
    settings: StreamSettings = make_streams(1).model_copy(
        update={"poll_interval": 0.5, "shard_refresh": 30.0}
    )
    consumer, _ = make_consumer(settings)
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    for operation in ("GetRecords", "ListShards"):
        consumer.kinesis.meta.events.register(f"before-call.kinesis.{operation}", count)
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    began = time.monotonic()
    timer.start()
    stats = consumer.run(stop)
    elapsed = time.monotonic() - began
    # A ConsumerStats (public) that handled nothing is all zeros, its largest batch too.
    assert dataclasses.astuple(stats) == (0, 0, 0, 0, 0, 0)
    assert calls["ListShards"] == 1  # listed again only after shard_refresh (30 s)
    # One read a poll, then a 0.5 s wait: a bound that load can only lower.
    assert 1 <= calls["GetRecords"] <= elapsed / 0.5 + 1, (calls, elapsed)


def test_a_group_member_lists_the_stream_once_per_refresh_not_every_poll(
    kinesis: Any, make_streams: Any, make_consumer: MakeConsumer
) -> None:
    """Renewing its leases each poll does not make a group member list the shards again."""
    settings: StreamSettings = make_streams(2).model_copy(update={"shard_refresh": 3600.0})
    consumer, lines = make_consumer(settings, owner="a")
    listed: list[str] = []
    consumer.kinesis.meta.events.register(
        "before-call.kinesis.ListShards", lambda **_: listed.append("ListShards")
    )
    assert consumer.poll_once() == 0  # lists the shards, takes both leases
    assert len(consumer.readers) == 2 and len(listed) == 1, lines
    send_rides(kinesis, settings.input_stream, generated_rides(10, seed=57))
    assert consumer.poll_once() == 10  # (moto: the shards' starts are listed once they have rides)
    before = len(listed)
    assert sum(consumer.poll_once() for _ in range(5)) == 0
    assert len(listed) == before, lines  # the next listing is an hour away


def test_a_stop_whose_leases_cannot_be_released_says_so_and_returns(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    """The lease table gone at the stop: one line (the leases expire instead), no exception."""
    settings: StreamSettings = make_streams(1)
    dynamodb = aws_client("dynamodb", settings.endpoint_url)
    table = "pace_release_leases"
    lines: list[str] = []
    store = SQLiteCheckpoints(settings.checkpoint_path)
    consumer = Consumer(
        stream_service,
        aws_client("kinesis", settings.endpoint_url),
        store,
        settings,
        lines.append,
        LeaseCoordinator(
            DynamoLeases(dynamodb, table, settings.consumer_name, settings.input_stream),
            "me",
            settings.lease_timeout,
            lines.append,
        ),
    )
    try:
        assert consumer.poll_once() == 0 and len(consumer.readers) == 1  # holds the lease
        dynamodb.delete_table(TableName=table)
        dynamodb.get_waiter("table_not_exists").wait(TableName=table)
        stop = threading.Event()
        stop.set()  # stop at once: run() goes straight to releasing the leases
        stats = consumer.run(stop)
    finally:
        store.close()
    assert stats.records == 0
    (said,) = [line for line in lines if "could not release the leases" in line]
    assert "(they expire instead)" in said and "ResourceNotFoundException" in said, said
    assert lines[-1].startswith("consumer default stopped: ")


def test_start_waits_a_second_between_attempts_on_an_endpoint_that_does_not_answer(
    make_consumer: MakeConsumer, make_streams: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead endpoint is asked about once a second until the deadline, not in a busy loop."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # one call per attempt: botocore's own retries off
    settings: StreamSettings = make_streams(1).model_copy(
        update={"endpoint_url": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    )
    consumer, _ = make_consumer(settings)
    attempts: list[float] = []
    consumer.kinesis.meta.events.register(
        "before-call.kinesis.ListShards", lambda **_: attempts.append(time.monotonic())
    )
    with pytest.raises(StreamError, match=r"did not answer within 2\.5 s"):
        consumer.start(threading.Event(), timeout=2.5)
    # At 0, 1 and 2 s and at the deadline (once more if a wait ends a hair before it): a
    # count that load can only lower.
    assert 1 <= len(attempts) <= 5, attempts
