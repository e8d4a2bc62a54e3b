"""Rides onto the input stream and predictions off the output stream (CLI, benchmark, compare)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.core.tlc import NUMERIC_COLUMNS
from deploy_modes.stream.events import ride_event
from deploy_modes.stream.kinesis import (
    MAX_PUT_RECORDS,
    ShardReader,
    list_shard_ids,
    put_records,
    read_all,
)
from deploy_modes.stream.service import OutputRecord

__all__ = [
    "follow_records",
    "generated_rides",
    "iter_rides",
    "read_predictions",
    "ride_source",
    "send_rides",
]

_RIDE_COLUMNS = list(NUMERIC_COLUMNS)  # what a ride event carries
_TICK = 0.1  # rate-limited sends put one PutRecords batch per tick


def _scalar(value: Any, cast: Callable[[Any], Any]) -> Any:
    # JSON has no NaN: a missing value travels as null (and becomes a dead letter).
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else cast(value)


def _record(ride: dict[str, Any] | bytes, position: int) -> OutputRecord:
    # Raw bytes go as they are (how tests and demos send poison records).
    if isinstance(ride, bytes):
        return OutputRecord(ride, str(position))
    ride_id = ride.get("ride_id")
    key = str(ride_id) if isinstance(ride_id, int | str) and str(ride_id) else str(position)
    # NaN/inf pass through as JSON's NaN extension: the consumer dead-letters them, not us.
    return OutputRecord(json.dumps(ride, separators=(",", ":")).encode(), key[:256])


def iter_rides(
    pu: Iterable[Any], do: Iterable[Any], distance: Iterable[Any], first_id: int = 1
) -> Iterator[dict[str, Any]]:
    """Yield course input events from column values; ride_ids count up from ``first_id``."""
    for i, (p, d, x) in enumerate(zip(pu, do, distance, strict=True)):
        yield ride_event(_scalar(p, int), _scalar(d, int), _scalar(x, float), first_id + i)


def _frame_rides(frame: Any, first_id: int) -> Iterator[dict[str, Any]]:
    return iter_rides(
        *(frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in _RIDE_COLUMNS),
        first_id=first_id,
    )


def ride_source(
    count: int, seed: int = 42, first_id: int = 1, input_path: Path | str | None = None
) -> tuple[int, Iterator[dict[str, Any]]]:
    """Return how many rides there are and a lazy iterator over them (parquet or generated)."""
    if input_path is not None:
        from deploy_modes.core.data import read_trips

        frame = read_trips(input_path, columns=_RIDE_COLUMNS).head(count)
    else:
        from deploy_modes.core.data import generate_month

        frame = generate_month(2021, 3, rows=count, seed=seed)[_RIDE_COLUMNS].head(count)
    return len(frame), _frame_rides(frame, first_id)


def generated_rides(count: int, seed: int = 42, first_id: int = 1) -> list[dict[str, Any]]:
    """Return ``count`` realistic rides from the core's TLC generator."""
    return list(ride_source(count, seed, first_id)[1])


def send_rides(
    client: Any,
    stream: str,
    rides: Iterable[dict[str, Any] | bytes],
    rate: float | None = None,
    on_batch: Callable[[list[Any], float], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Put ride events in PutRecords batches (at ``rate`` rides/s if given); return the count."""
    per_batch = MAX_PUT_RECORDS if not rate else max(1, min(MAX_PUT_RECORDS, round(rate * _TICK)))
    interval = per_batch / rate if rate else 0.0
    batch: list[Any] = []
    sent = 0
    started = time.perf_counter()

    def flush() -> None:
        nonlocal sent
        if rate:
            # Pace against the start time, not the previous batch, so slow puts do not drift.
            delay = started + (sent // per_batch) * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        records = [_record(ride, sent + i) for i, ride in enumerate(batch)]
        put_records(client, stream, records)
        if on_batch is not None:
            on_batch(batch, time.time())
        sent += len(batch)

    for ride in rides:
        batch.append(ride)
        if len(batch) == per_batch:
            flush()
            batch = []
            if stop is not None and stop.is_set():
                return sent
    if batch:
        flush()
    return sent


def read_predictions(client: Any, stream: str) -> list[dict[str, Any]]:
    """Return every event now in ``stream``, each decoded with its arrival time added."""
    events = []
    for record, raw in read_all(client, stream):
        event = json.loads(record.data)
        arrived = raw.get("ApproximateArrivalTimestamp")
        if isinstance(event, dict) and arrived is not None:
            event["_arrived"] = arrived.timestamp()
        events.append(event)
    return events


def follow_records(
    client: Any,
    stream: str,
    start: str = "TRIM_HORIZON",
    follow: bool = True,
    stop: threading.Event | None = None,
    poll: float = 0.5,
) -> Iterator[bytes]:
    """Yield record payloads from every shard; keep waiting for new ones while ``follow``."""
    readers = [ShardReader(client, stream, s, None, start) for s in list_shard_ids(client, stream)]
    while stop is None or not stop.is_set():
        got = 0
        for reader in readers:
            for record in reader.read(10_000):
                got += 1
                yield record.data
        if got == 0:
            if not follow:
                return
            if stop is not None:
                stop.wait(poll)
            else:
                time.sleep(poll)
