"""The long-running consumer: every shard, batch predictions, checkpoint after the puts.

Delivery is at-least-once: a shard's checkpoint moves only after the batch's predictions
and dead letters are acknowledged by PutRecords, so a crash repeats at most the batch in
flight (readers dedupe on ``ride_id``) and never loses a ride.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy_modes.stream.checkpoints import CheckpointStore
from deploy_modes.stream.kinesis import ShardReader, list_shard_ids, put_records
from deploy_modes.stream.service import InputRecord, StreamService
from deploy_modes.stream.settings import StreamSettings

__all__ = ["Consumer", "ConsumerStats", "stop_on_signals"]

_REPORT_EVERY = 5.0  # seconds between progress lines while records flow
_ERROR_BACKOFF = 1.0  # seconds to wait after a failed read or put before retrying the shard


@dataclass
class ConsumerStats:
    """Counters since the consumer started."""

    records: int = 0
    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    errors: int = 0

    def line(self) -> str:
        """Return a one-line summary."""
        return (
            f"{self.records:,} records: {self.predictions:,} predictions, "
            f"{self.dead_letters:,} dead letters, {self.batches:,} batches, {self.errors} errors"
        )


class Consumer:
    """Read every shard of the input stream and write predictions and dead letters."""

    def __init__(
        self,
        service: StreamService,
        kinesis: Any,
        checkpoints: CheckpointStore,
        settings: StreamSettings,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.service = service
        self.kinesis = kinesis
        self.checkpoints = checkpoints
        self.settings = settings
        self.log = log or (lambda message: None)
        self.stats = ConsumerStats()
        self.readers: dict[str, ShardReader] = {}
        self._refreshed_at = float("-inf")

    @property
    def name(self) -> str:
        """Return the consumer name its checkpoints are kept under."""
        return self.settings.consumer_name

    def refresh_shards(self) -> None:
        """Discover the input stream's shards, starting each new one at its checkpoint."""
        stream = self.settings.input_stream
        for shard_id in list_shard_ids(self.kinesis, stream):
            if shard_id not in self.readers:
                after = self.checkpoints.get(self.name, stream, shard_id)
                self.readers[shard_id] = ShardReader(
                    self.kinesis, stream, shard_id, after, self.settings.start_position
                )
                where = f"after {after}" if after else f"at {self.settings.start_position}"
                self.log(f"consumer {self.name}: reading {shard_id} {where}")
        self._refreshed_at = time.monotonic()

    def handle(self, batch: list[tuple[str, list[InputRecord]]]) -> None:
        """Predict one batch (records of several shards), put everything, then checkpoint."""
        records = [record for _, shard_records in batch for record in shard_records]
        result = self.service.process(records)
        attempts = self.settings.put_attempts
        # One PutRecords for the whole round, not one per shard: calls, not records, cost most.
        put_records(self.kinesis, self.settings.output_stream, result.outputs, attempts)
        put_records(self.kinesis, self.settings.dlq_stream, result.dead_letters, attempts)
        for shard_id, shard_records in batch:
            sequence = shard_records[-1].sequence
            if sequence is not None:
                self.checkpoints.save(self.name, self.settings.input_stream, shard_id, sequence)
        self.stats.records += len(records)
        self.stats.predictions += len(result.outputs)
        self.stats.dead_letters += len(result.dead_letters)
        self.stats.batches += 1

    def _rewind(self, shard_id: str) -> None:
        """Forget a shard's read position so it resumes from its checkpoint."""
        self.readers.pop(shard_id, None)
        self._refreshed_at = float("-inf")

    def _failed(self, what: str, exc: Exception, shard_ids: list[str]) -> None:
        self.stats.errors += 1
        self.log(f"consumer {self.name}: {what}: {exc}; retrying from the checkpoint")
        for shard_id in shard_ids:
            self._rewind(shard_id)

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Read every shard once, handle what came as one batch; return the records handled.

        A batch holds at most ``batch_size`` records (``batch_size // shards`` per shard, at
        least one), so a crash repeats at most that many rides.
        """
        if time.monotonic() - self._refreshed_at > self.settings.shard_refresh:
            self.refresh_shards()
        per_shard = max(1, self.settings.batch_size // max(1, len(self.readers)))
        batch: list[tuple[str, list[InputRecord]]] = []
        for shard_id, reader in list(self.readers.items()):
            try:
                records = reader.read(per_shard)
            except Exception as exc:  # never crash on a flaky endpoint: that shard waits
                self._failed(f"reading {shard_id}", exc, [shard_id])
                continue
            if records:
                batch.append((shard_id, records))
        if not batch:
            return 0
        try:
            self.handle(batch)
        except Exception as exc:  # a put that stayed failed: nothing was checkpointed
            self._failed("writing", exc, [shard_id for shard_id, _ in batch])
            if stop is not None:
                stop.wait(_ERROR_BACKOFF)
            return 0
        return sum(len(records) for _, records in batch)

    def run(self, stop: threading.Event) -> ConsumerStats:
        """Consume until ``stop`` is set; the batch in flight is finished and checkpointed."""
        self.log(
            f"consumer {self.name}: {self.settings.input_stream} -> "
            f"{self.settings.output_stream} (dead letters: {self.settings.dlq_stream})"
        )
        reported_at, reported = time.monotonic(), 0
        while not stop.is_set():
            try:
                handled = self.poll_once(stop)
            except Exception as exc:  # shard discovery failed: the stream may come back
                self.stats.errors += 1
                self.log(f"consumer {self.name}: {exc}")
                self._refreshed_at = float("-inf")
                stop.wait(_ERROR_BACKOFF)
                continue
            now = time.monotonic()
            if self.stats.records != reported and now - reported_at >= _REPORT_EVERY:
                self.log(f"consumer {self.name}: {self.stats.line()}")
                reported_at, reported = now, self.stats.records
            if handled == 0:
                stop.wait(self.settings.poll_interval)
        self.log(f"consumer {self.name} stopped: {self.stats.line()}")
        return self.stats


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT so the consumer finishes its batch and exits."""

    def _handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
