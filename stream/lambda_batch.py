"""One Lambda Kinesis batch: puts, and item failures only where a retry can help.

Lambda retries a Kinesis batch from the lowest sequence number named in ``batchItemFailures``
(and the whole batch when the handler raises). So:

- a poison record goes to the dead-letter stream, like in the consumer, and is done: naming
  it would make Lambda retry it, and the good records behind it, forever;
- a record is named only when its own prediction or dead letter could not be put after the
  partial re-puts (a transient failure: retrying it can succeed);
- a record without a usable sequence number cannot be named: it is still predicted or
  dead-lettered, and if its put fails the handler raises so Lambda retries the whole batch
  rather than losing it;
- a put call that fails as a whole (stream missing, endpoint down after botocore's retries)
  raises: every record is retried.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deploy_modes.core.artifact import load_model
from deploy_modes.core.naming import EVENT_FIELDS
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.stream.events import Poison, dead_letter, encode
from deploy_modes.stream.kinesis import StreamError, client_config, put_records_reporting
from deploy_modes.stream.service import InputRecord, OutputRecord, StreamService

__all__ = ["LambdaBatch", "Put", "from_environment"]

DEFAULT_MODEL_LOCATION = "models/ride-duration"
DEFAULT_PREDICTIONS_STREAM = "ride_predictions"
DEFAULT_DEAD_LETTER_STREAM = "ride_events_dlq"

Put = Callable[[list[OutputRecord]], list[OutputRecord]]
"""Put records on a stream; return those that still failed (raise if the call failed)."""


def _sequence(kinesis: Mapping[str, Any]) -> str | None:
    """Return the record's sequence number if Lambda could use it as an item identifier."""
    sequence = kinesis.get("sequenceNumber")
    return sequence if isinstance(sequence, str) and sequence.isdigit() else None


def _unusable(raw: object, why: str, sequence: str | None) -> OutputRecord:
    """Return the dead letter of a Lambda record that holds no decodable Kinesis data."""
    payload = json.dumps(raw, default=str).encode()
    letter = dead_letter(payload, Poison(why), None, sequence)
    return OutputRecord(encode(letter), sequence or "unusable", sequence)


@dataclass
class LambdaBatch:
    """Handle Lambda Kinesis events with one stream service and two puts (None: test run)."""

    service: StreamService
    put_predictions: Put | None = None
    put_dead_letters: Put | None = None
    log: Callable[[str], None] = print  # Lambda sends stdout to CloudWatch

    def handle(self, event: object) -> dict[str, Any]:
        """Predict every ride of the event; return predictions and the items to retry."""
        records: list[InputRecord] = []
        letters: list[OutputRecord] = []
        raw_records = event.get("Records") if isinstance(event, dict) else None
        for raw in raw_records if isinstance(raw_records, list) else []:
            kinesis = raw.get("kinesis") if isinstance(raw, dict) else None
            kinesis = kinesis if isinstance(kinesis, dict) else {}
            sequence = _sequence(kinesis)
            data = kinesis.get("data")
            try:
                payload = base64.b64decode(data, validate=True) if isinstance(data, str) else None
            except (binascii.Error, ValueError):
                payload = None
            if payload is None:
                letters.append(_unusable(raw, "Lambda record has no base64 Kinesis data", sequence))
            else:
                records.append(InputRecord(payload, sequence))
        unnamed = sum(1 for r in records if r.sequence is None) + sum(
            1 for r in letters if r.source_sequence is None
        )
        if unnamed:
            self.log(f"{unnamed} records without a usable sequence number in this batch")
        result = self.service.process(records)
        failed: list[OutputRecord] = []
        # Dead letters first: if their put fails as a whole, nothing was predicted twice.
        if self.put_dead_letters is not None:
            failed += self.put_dead_letters(letters + result.dead_letters)
        if self.put_predictions is not None:
            failed += self.put_predictions(result.outputs)
        if any(record.source_sequence is None for record in failed):
            raise StreamError(
                "a record without a usable sequence number could not be put: "
                "failing the whole batch so Lambda retries it"
            )
        retry = sorted({r.source_sequence for r in failed if r.source_sequence}, key=int)
        if retry:
            self.log(f"{len(failed)} puts still failed: Lambda retries from {retry[0]}")
        return {
            "predictions": result.predictions,
            "batchItemFailures": [{"itemIdentifier": sequence} for sequence in retry],
        }


def from_environment(environ: Mapping[str, str]) -> LambdaBatch:
    """Build the batch handler from the course's Lambda environment variables.

    ``MODEL_LOCATION``, ``PREDICTIONS_STREAM_NAME``, ``DEAD_LETTER_STREAM_NAME``,
    ``KINESIS_ENDPOINT_URL`` and ``TEST_RUN=True`` (predict without putting).
    """
    service = StreamService(
        ModelService(
            load_model(environ.get("MODEL_LOCATION", DEFAULT_MODEL_LOCATION)), EVENT_FIELDS
        )
    )
    if environ.get("TEST_RUN", "False") == "True":
        return LambdaBatch(service)
    client = aws_client("kinesis", environ.get("KINESIS_ENDPOINT_URL"), config=client_config())

    def put_to(stream: str) -> Put:
        def put(records: list[OutputRecord]) -> list[OutputRecord]:
            return put_records_reporting(client, stream, records)

        return put

    return LambdaBatch(
        service,
        put_to(environ.get("PREDICTIONS_STREAM_NAME", DEFAULT_PREDICTIONS_STREAM)),
        put_to(environ.get("DEAD_LETTER_STREAM_NAME", DEFAULT_DEAD_LETTER_STREAM)),
    )
