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

    def handle(self, shard_id: str, records: list[InputRecord]) -> None:
        """Predict a batch, put predictions and dead letters, then checkpoint the shard."""
        result = self.service.process(records)
        attempts = self.settings.put_attempts
        put_records(self.kinesis, self.settings.output_stream, result.outputs, attempts)
        put_records(self.kinesis, self.settings.dlq_stream, result.dead_letters, attempts)
        sequence = records[-1].sequence
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

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Read one batch from every shard and handle it; return how many records came."""
        if time.monotonic() - self._refreshed_at > self.settings.shard_refresh:
            self.refresh_shards()
        handled = 0
        for shard_id, reader in list(self.readers.items()):
            if stop is not None and stop.is_set():
                break  # finish between batches: the one in flight is already checkpointed
            try:
                records = reader.read(self.settings.batch_size)
                if records:
                    self.handle(shard_id, records)
                    handled += len(records)
            except Exception as exc:  # never crash on a flaky emulator or throttled put
                self.stats.errors += 1
                self.log(f"consumer {self.name}: {shard_id}: {exc}; retrying from its checkpoint")
                self._rewind(shard_id)
                if stop is not None:
                    stop.wait(_ERROR_BACKOFF)
        return handled

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
