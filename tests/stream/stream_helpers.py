"""Helpers shared by the stream tests (imported as ``stream_helpers``)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from deploy_modes.stream.consumer import Consumer
from deploy_modes.stream.rides import read_predictions
from deploy_modes.stream.settings import StreamSettings

# The course README's test event: ride 256 from zone 130 to 205, 3.66 miles.
COURSE_EVENT: dict[str, Any] = {
    "Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "1",
                "sequenceNumber": "49630081666084879290581185630324770398608704880802529282",
                "data": "ewogICAgICAgICJyaWRlIjogewogICAgICAgICAgICAiUFVMb2NhdGlvbklEIjogMTMw"
                "LAogICAgICAgICAgICAiRE9Mb2NhdGlvbklEIjogMjA1LAogICAgICAgICAgICAidHJpcF9kaXN0"
                "YW5jZSI6IDMuNjYKICAgICAgICB9LCAKICAgICAgICAicmlkZV9pZCI6IDI1NgogICAgfQ==",
                "approximateArrivalTimestamp": 1654161514.132,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": "shardId-000000000000:"
            "49630081666084879290581185630324770398608704880802529282",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::387546586013:role/lambda-kinesis-role",
            "awsRegion": "eu-west-1",
            "eventSourceARN": "arn:aws:kinesis:eu-west-1:387546586013:stream/ride_events",
        }
    ]
}


class MakeConsumer(Protocol):
    """The make_consumer fixture (conftest.py): a consumer and the list its lines go to.

    With ``owner``, the consumer is that member of its group: it takes leases in the group's
    SQLite lease table (``consumer.leases.table``) and logs their changes to the same list.
    """

    def __call__(
        self, settings: StreamSettings, owner: str | None = None
    ) -> tuple[Consumer, list[str]]: ...


def predictions_by_id(kinesis: Any, stream: str) -> dict[Any, list[float]]:
    """Return every ride_duration in ``stream`` grouped by ride_id."""
    found: dict[Any, list[float]] = {}
    for event in read_predictions(kinesis, stream):
        prediction = event["prediction"]
        found.setdefault(prediction["ride_id"], []).append(prediction["ride_duration"])
    return found


def dead_letters(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """Return every dead letter in ``stream``."""
    return [
        {k: v for k, v in event.items() if k != "_arrived"}
        for event in read_predictions(kinesis, stream)
    ]


def ride_bytes(pu: Any, do: Any, distance: Any, ride_id: Any) -> bytes:
    """Encode one course input event."""
    return json.dumps(
        {
            "ride": {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance},
            "ride_id": ride_id,
        }
    ).encode()
