"""Pure event codecs: a Kinesis record's bytes -> a validated ride or a poison reason, and back.

The contract is the course's: input ``{"ride": {...}, "ride_id": 256}``, output
``{"model": ..., "version": ..., "prediction": {"ride_duration": ..., "ride_id": 256}}``,
both defined by :mod:`deploy_modes.core.schema` (``RideEvent``, ``PredictionEvent``). A tip
model's output names its own target: ``{"prediction": {"tip_amount": ..., "ride_id": 256}}``
(``TipPredictionEvent``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from deploy_modes.core.naming import DURATION, EVENT_FIELDS
from deploy_modes.core.schema import (
    MAX_RIDE_ID_CHARS,
    RideEvent,
    event_error,
)

__all__ = [
    "MAX_PARTITION_KEY_CHARS",
    "MAX_RECORD_BYTES",
    "Poison",
    "RideEvent",
    "dead_letter",
    "decode_ride_event",
    "encode",
    "prediction_event",
    "ride_event",
]

MAX_RECORD_BYTES = 64 * 1024  # a ride is ~100 bytes; anything this big is not a ride
MAX_PARTITION_KEY_CHARS = MAX_RIDE_ID_CHARS  # the ride_id becomes the output partition key
# A dead letter must itself fit in one Kinesis record (1 MiB) with its envelope.
_MAX_DEAD_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Poison:
    """Why a record cannot be predicted (the field is None when the whole record is bad)."""

    error: str
    field: str | None = None


def decode_ride_event(data: bytes, max_bytes: int = MAX_RECORD_BYTES) -> RideEvent | Poison:
    """Return the record's validated ride and ride_id, or the reason it is poison."""
    if len(data) > max_bytes:
        return Poison(f"record is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return Poison("record is not UTF-8 text")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return Poison(f"record is not valid JSON: {str(exc)[:200]}")
    if not isinstance(body, dict):
        return Poison(f"record must be a JSON object, got {type(body).__name__}")
    try:
        return RideEvent.model_validate(body)
    except ValidationError as exc:
        error = event_error(exc)
        return Poison(error.message, error.field)


def ride_event(pu: int | None, do: int | None, distance: float | None, ride_id: Any) -> dict:
    """Build the course's input event for one ride."""
    return {
        "ride": {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance},
        "ride_id": ride_id,
    }


def prediction_event(
    model: str, version: str, value: float, ride_id: Any, field: str = EVENT_FIELDS[DURATION]
) -> dict:
    """Build the output event for one prediction, the value under its target's ``field``."""
    # PredictionEvent's (or TipPredictionEvent's) shape as a plain dict (tests hold them equal):
    # a model per event would re-validate values the service just made, and encode() must
    # refuse a NaN, not null it.
    return {
        "model": model,
        "version": version,
        "prediction": {field: value, "ride_id": ride_id},
    }


def dead_letter(
    data: bytes, poison: Poison, shard_id: str | None = None, sequence: str | None = None
) -> dict:
    """Build a dead-letter event: the error and the original payload (text or base64)."""
    payload = data[:_MAX_DEAD_PAYLOAD_BYTES]
    letter: dict[str, Any] = {
        "error": poison.error,
        "field": poison.field,
        "source": {"shard_id": shard_id, "sequence_number": sequence},
        "truncated": len(payload) < len(data),
    }
    try:
        letter["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        letter["payload_base64"] = base64.b64encode(payload).decode("ascii")
    return letter


def encode(event: dict) -> bytes:
    """Serialize an event as compact JSON bytes."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
