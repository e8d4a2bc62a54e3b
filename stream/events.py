"""Pure event codecs: a Kinesis record's bytes -> a validated ride or a poison reason, and back.

The contract is the course's: input ``{"ride": {...}, "ride_id": 256}``, output
``{"model": ..., "version": ..., "prediction": {"ride_duration": ..., "ride_id": 256}}``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.validation import Ride, validate_ride

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
MAX_PARTITION_KEY_CHARS = 256  # Kinesis' limit; the ride_id becomes the output partition key
# A dead letter must itself fit in one Kinesis record (1 MiB) with its envelope.
_MAX_DEAD_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class RideEvent:
    """A decoded, validated input record."""

    ride: Ride
    ride_id: int | str


@dataclass(frozen=True, slots=True)
class Poison:
    """Why a record cannot be predicted (the field is None when the whole record is bad)."""

    error: str
    field: str | None = None


def _ride_id(value: Any) -> int | str:
    if value is None:
        raise RideValidationError("ride_id is required", "ride_id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RideValidationError(
            f"ride_id must be an integer or a string, got {type(value).__name__}", "ride_id"
        )
    if not str(value) or len(str(value)) > MAX_PARTITION_KEY_CHARS:
        raise RideValidationError(
            f"ride_id must be 1 to {MAX_PARTITION_KEY_CHARS} characters", "ride_id"
        )
    return value


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
    if "ride" not in body:
        return Poison("ride is required", "ride")
    try:
        ride_id = _ride_id(body.get("ride_id"))
        ride = validate_ride(body["ride"])
    except RideValidationError as exc:
        return Poison(exc.message, exc.field)
    return RideEvent(ride, ride_id)


def ride_event(pu: int | None, do: int | None, distance: float | None, ride_id: Any) -> dict:
    """Build the course's input event for one ride."""
    return {
        "ride": {"PULocationID": pu, "DOLocationID": do, "trip_distance": distance},
        "ride_id": ride_id,
    }


def prediction_event(model: str, version: str, duration: float, ride_id: Any) -> dict:
    """Build the course's output event for one prediction."""
    return {
        "model": model,
        "version": version,
        "prediction": {"ride_duration": duration, "ride_id": ride_id},
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
