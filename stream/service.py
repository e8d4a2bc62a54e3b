"""The stream service: raw Kinesis records in, prediction events and dead letters out.

Both runners (the Lambda handler and the long-running consumer) call this one class; it
never talks to AWS itself (the runners put what it returns), so a test run has no puts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.naming import EVENT_FIELDS
from deploy_modes.core.scoring import ModelService
from deploy_modes.stream.events import (
    MAX_RECORD_BYTES,
    Poison,
    RideEvent,
    dead_letter,
    decode_ride_event,
    encode,
    prediction_event,
)

__all__ = ["BatchResult", "InputRecord", "OutputRecord", "StreamService"]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One record read from the input stream."""

    data: bytes
    sequence: str | None = None
    shard_id: str | None = None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record to put: JSON bytes, the partition key, and the input it came from."""

    data: bytes
    partition_key: str
    source_sequence: str | None = None


@dataclass
class BatchResult:
    """What one batch of input records became."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    poison: list[InputRecord] = field(default_factory=list)


class StreamService:
    """Turn batches of raw ride records into prediction events with one model service."""

    def __init__(self, model: ModelService, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        field = EVENT_FIELDS.get(model.target)
        if field is None:  # ModelService refuses such a model unless told otherwise; say why
            raise ModelLoadError(
                f"{model.model.source or 'the model'} predicts {model.target}, which no "
                f"prediction event names (known: {', '.join(EVENT_FIELDS)})"
            )
        self.model = model
        self.field = field
        """The ``prediction`` field carrying the value: ``ride_duration`` or ``tip_amount``."""
        self.max_record_bytes = max_record_bytes

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        """Decode, validate and predict a batch; poison records become dead letters."""
        result = BatchResult()
        good: list[RideEvent] = []
        sources: list[str | None] = []
        for record in records:
            decoded = decode_ride_event(record.data, self.max_record_bytes)
            if isinstance(decoded, Poison):
                result.poison.append(record)
                letter = dead_letter(record.data, decoded, record.shard_id, record.sequence)
                key = record.sequence or record.shard_id or "poison"
                result.dead_letters.append(OutputRecord(encode(letter), key, record.sequence))
            else:
                good.append(decoded)
                sources.append(record.sequence)
        if not good:
            return result
        values = self.model.predict_arrays(
            np.fromiter((e.ride.pu for e in good), dtype="int64", count=len(good)),
            np.fromiter((e.ride.do for e in good), dtype="int64", count=len(good)),
            np.fromiter((e.ride.distance for e in good), dtype="float64", count=len(good)),
        ).tolist()
        name, version, field = self.model.name, self.model.version, self.field
        for event, value, source in zip(good, values, sources, strict=True):
            prediction = prediction_event(name, version, value, event.ride_id, field)
            result.predictions.append(prediction)
            result.outputs.append(OutputRecord(encode(prediction), str(event.ride_id), source))
        return result
