"""LATEST counts from the Kinesis endpoint's clock, not this host's (real moto server).

Arrival stamps are the server's: a consumer whose host clock runs ahead, asking for records
"since I started" in its own time, would skip every record that arrives within the skew.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from stream_helpers import predictions_by_id

from deploy_modes.core.storage import aws_client
from deploy_modes.stream.checkpoints import SQLiteCheckpoints
from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.kinesis import ensure_streams, server_time
from deploy_modes.stream.rides import generated_rides, send_rides
from deploy_modes.stream.service import StreamService
from deploy_modes.stream.settings import StreamSettings

pytestmark = pytest.mark.integration

SKEW = 30.0  # seconds this host's clock runs ahead of the endpoint's, in these tests


def _latest_consumer(
    settings: StreamSettings,
    service: StreamService,
    lines: list[str],
    clock: Callable[[], float],
    kinesis: Any | None = None,
) -> Consumer:
    return Consumer(
        service,
        kinesis or aws_client("kinesis", settings.endpoint_url),
        SQLiteCheckpoints(settings.checkpoint_path),
        settings,
        lines.append,
        clock=clock,
    )


def _drain(consumer: Consumer) -> None:
    while consumer.poll_once():
        pass


def test_server_time_is_the_endpoints_date(kinesis: Any, make_streams: Any) -> None:
    settings: StreamSettings = make_streams(1)
    stamp = server_time(kinesis, settings.input_stream)
    assert stamp is not None
    assert abs(stamp - time.time()) < 5  # moto runs on this host: the same clock, to a second


def test_latest_consumer_with_a_clock_ahead_rereads_a_failed_batch(
    kinesis: Any, make_streams: Any, stream_service: StreamService
) -> None:
    """The failed batch's shard is reopened at "since the start": in the server's time.

    In this host's time (30 s ahead) the reopened iterator would start after the batch. moto
    places an iterator for a future timestamp after the shard's last record, so the first
    opening reads new rides either way; the reopening after the failed put is what tells.
    """
    settings: StreamSettings = make_streams(2).model_copy(update={"start_position": "LATEST"})
    send_rides(kinesis, settings.input_stream, generated_rides(20, seed=3))  # before: not read
    time.sleep(2.5)  # past the 1 s margin and the Date header's whole seconds
    lines: list[str] = []
    consumer = _latest_consumer(settings, stream_service, lines, lambda: time.time() + SKEW)
    assert consumer.poll_once() == 0
    fresh = generated_rides(50, seed=4, first_id=501)
    send_rides(kinesis, settings.input_stream, fresh)
    kinesis.delete_stream(StreamName=settings.output_stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=settings.output_stream)
    assert consumer.poll_once() == 0  # read the rides, the put failed: the shards reopen
    assert consumer.failing is not None
    ensure_streams(kinesis, [settings.output_stream], 1, say=lambda message: None)
    _drain(consumer)
    assert consumer.failing is None
    delivered = predictions_by_id(kinesis, settings.output_stream)
    assert sorted(delivered) == sorted(ride["ride_id"] for ride in fresh)
    assert not any("Date header" in line for line in lines)


def _with_date(client: Any, date: str | None) -> Any:
    """Return ``client`` with DescribeStreamSummary's Date replaced on arrival (None: removed)."""

    def replace_date(parsed: dict[str, Any], **_: Any) -> None:
        headers = parsed.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        headers.pop("date", None)
        if date is not None:
            headers["date"] = date

    client.meta.events.register("after-call.kinesis.DescribeStreamSummary", replace_date)
    return client


@pytest.mark.parametrize(
    "date",
    [None, "not a date", "Sat, 05 Dec 2026 18:00:00 -0000"],  # -0000: no zone, RFC 5322
    ids=["missing", "garbled", "zoneless"],
)
def test_server_time_refuses_a_date_it_cannot_place(make_streams: Any, date: str | None) -> None:
    settings: StreamSettings = make_streams(1)
    client = _with_date(aws_client("kinesis", settings.endpoint_url), date)
    assert server_time(client, settings.input_stream) is None


def test_an_endpoint_without_a_date_header_is_said_and_the_host_clock_used(
    make_streams: Any, stream_service: StreamService
) -> None:
    settings: StreamSettings = make_streams(1).model_copy(update={"start_position": "LATEST"})
    # An endpoint that sends no Date: the real server's answer, its header removed on arrival.
    client = _with_date(aws_client("kinesis", settings.endpoint_url), None)
    send_rides(client, settings.input_stream, generated_rides(10, seed=6))  # before: not read
    time.sleep(2.5)  # past the 1 s margin
    lines: list[str] = []
    consumer = _latest_consumer(settings, stream_service, lines, time.time, kinesis=client)
    assert consumer.poll_once() == 0
    assert sum("sends no usable Date header" in line for line in lines) == 1
    fresh = generated_rides(10, seed=5, first_id=901)
    send_rides(client, settings.input_stream, fresh)  # within a second of the start
    # A failed put reopens the shard at the start stamp: "since the start", not a second after.
    client.delete_stream(StreamName=settings.output_stream)
    client.get_waiter("stream_not_exists").wait(StreamName=settings.output_stream)
    assert consumer.poll_once() == 0 and consumer.failing is not None
    ensure_streams(client, [settings.output_stream], 1, say=lambda message: None)
    _drain(consumer)
    assert sorted(predictions_by_id(client, settings.output_stream)) == sorted(
        ride["ride_id"] for ride in fresh
    )


def test_a_trim_horizon_consumer_needs_no_date_header_and_says_where_it_reads(
    make_streams: Any, stream_service: StreamService
) -> None:
    """Only LATEST reads the endpoint's clock: without a Date, TRIM_HORIZON has nothing to say."""
    settings: StreamSettings = make_streams(1)
    assert settings.start_position == "TRIM_HORIZON"
    client = _with_date(aws_client("kinesis", settings.endpoint_url), None)
    send_rides(client, settings.input_stream, generated_rides(10, seed=7))
    lines: list[str] = []
    consumer = _latest_consumer(settings, stream_service, lines, time.time, kinesis=client)
    assert consumer.poll_once() == 10  # every ride, those sent before the start too
    assert not any("Date" in line for line in lines), lines
    assert any(line.endswith(" at TRIM_HORIZON") for line in lines), lines


def _arrival(client: Any, stream: str) -> float:
    """Return the arrival stamp (epoch seconds) of the only record on the stream's one shard."""
    shard = client.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (record,) = client.get_records(ShardIterator=iterator)["Records"]
    return record["ApproximateArrivalTimestamp"].timestamp()


def test_without_a_date_a_host_clock_less_than_1s_ahead_skips_no_ride(
    make_streams: Any, stream_service: StreamService
) -> None:
    """The host-clock stamp keeps its 1 s margin for a clock ahead of the endpoint's.

    The ride arrives as the consumer starts, by a host clock 0.5 s ahead of the endpoint's
    (frozen at arrival + 0.5 s, so nothing depends on how fast the machine is). With the
    margin LATEST counts from arrival - 0.5 s and reads it; without, from arrival + 0.5 s.
    """
    settings: StreamSettings = make_streams(1).model_copy(update={"start_position": "LATEST"})
    client = _with_date(aws_client("kinesis", settings.endpoint_url), None)
    ride = generated_rides(1, seed=8, first_id=951)
    send_rides(client, settings.input_stream, ride)
    arrived = _arrival(client, settings.input_stream)
    lines: list[str] = []
    consumer = _latest_consumer(
        settings, stream_service, lines, lambda: arrived + 0.5, kinesis=client
    )
    assert consumer.poll_once() == 1, lines
    assert sorted(predictions_by_id(client, settings.output_stream)) == [951]
