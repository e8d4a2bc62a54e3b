"""The long-running consumer: every shard, batch predictions, checkpoint after the puts.

Delivery is at-least-once: a shard's checkpoint moves only after the batch's predictions
and dead letters are acknowledged by PutRecords, so a crash repeats at most the batch in
flight (readers dedupe on ``ride_id``) and never loses a ride. Checkpoints are bound to the
stream incarnation they were taken on (see :mod:`deploy_modes.stream.checkpoints`).

Failures: at start the consumer waits at most ``startup_timeout`` for the input stream, then
raises one clear error. Once running, a failed read or put rewinds the shards involved to
their checkpoints and retries with exponential backoff; the log gets one line when the
consumer starts failing (or fails differently) and one when it recovers, not one a second.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy_modes.stream.checkpoints import Checkpoint, CheckpointStore, resume_after
from deploy_modes.stream.kinesis import (
    CheckpointOutOfRange,
    Shard,
    ShardReader,
    StreamError,
    list_shards,
    put_records,
    server_time,
    stream_incarnation,
)
from deploy_modes.stream.leases import LeaseCoordinator
from deploy_modes.stream.service import InputRecord, StreamService
from deploy_modes.stream.settings import StreamSettings

__all__ = ["Consumer", "ConsumerStats", "stop_on_signals"]

_REPORT_EVERY = 5.0  # seconds between progress lines while records flow
_BACKOFF_BASE = 0.2  # seconds after the first failure; doubles with each failure in a row
_BACKOFF_MAX = 5.0
# LATEST is read as "arrived since the consumer started" in the Kinesis endpoint's clock (its
# Date header, whole seconds), less this much for the header's truncation and the call's
# round trip.
_CLOCK_MARGIN = 1.0


@dataclass
class ConsumerStats:
    """Counters since the consumer started."""

    records: int = 0
    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    errors: int = 0
    largest_batch: int = 0

    def line(self) -> str:
        """Return a one-line summary."""
        return (
            f"{self.records:,} records: {self.predictions:,} predictions, "
            f"{self.dead_letters:,} dead letters, {self.batches:,} batches, {self.errors} errors"
        )


def _reason(exc: BaseException) -> str:
    """Return what kind of failure ``exc`` is (its root cause), without what changes each time.

    An unreachable endpoint fails the listing, every shard's read and the put alike: that
    is one state, reported once.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return f"{type(exc).__name__}:{code}" if code else type(exc).__name__


@dataclass
class _Bound:
    """What a shard's checkpoints are bound to: the stream incarnation and the shard's start."""

    incarnation: str
    shard_start: str | None  # None until the shard has records (see _bind)


class Consumer:
    """Read every shard of the input stream and write predictions and dead letters."""

    def __init__(
        self,
        service: StreamService,
        kinesis: Any,
        checkpoints: CheckpointStore,
        settings: StreamSettings,
        log: Callable[[str], None] | None = None,
        leases: LeaseCoordinator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.leases = leases  # None: this consumer reads every shard
        self.kinesis = kinesis
        self.checkpoints = checkpoints
        self.settings = settings
        self.log = log or (lambda message: None)
        self.stats = ConsumerStats()
        self.readers: dict[str, ShardReader] = {}
        self.failing: str | None = None  # what is failing now, None when healthy
        self._failing_key: str | None = None
        self._failing_since = 0.0
        self._failures_in_row = 0
        self._bound: dict[str, _Bound] = {}
        self._shards: list[Shard] = []
        self._incarnation = ""
        self._refreshed_at = float("-inf")
        self._clock = clock
        self._started_at: float | None = None  # set by the first refresh_shards

    @property
    def name(self) -> str:
        """Return the consumer name its checkpoints are kept under."""
        return self.settings.consumer_name

    def _say(self, message: str) -> None:
        self.log(f"consumer {self.name}: {message}")

    def refresh_shards(self) -> None:
        """Discover the input stream's shards, starting each new one at its valid checkpoint."""
        stream = self.settings.input_stream
        shards = list_shards(self.kinesis, stream)
        incarnation = stream_incarnation(self.kinesis, stream)
        if self._started_at is None:
            self._started_at = self._start_stamp(stream)
        stale = [s for s, bound in self._bound.items() if bound.incarnation != incarnation]
        if stale:
            # Open iterators may still "work" on the new stream, positioned after old
            # sequence numbers; reopen every shard from its (now foreign) checkpoint instead.
            self._say(f"{stream} was created again ({incarnation}); reopening its shards")
            for shard_id in stale:
                self._rewind(shard_id)
        self._shards, self._incarnation = shards, incarnation
        if self.leases is None:
            for shard in shards:
                if shard.shard_id not in self.readers:
                    self._open(shard, incarnation)
        else:
            self._sync_leases()
        self._refreshed_at = time.monotonic()

    def _sync_leases(self) -> None:
        """Read exactly the shards whose leases this consumer holds (a consumer group)."""
        assert self.leases is not None
        held = self.leases.sync(
            [
                (s.shard_id, tuple(p for p in (s.parent_shard_id, s.adjacent_parent_shard_id) if p))
                for s in self._shards
            ],
            self._incarnation,
        )
        if self.leases.newer_incarnation:
            # Another consumer saw the stream created again before we did: list it now.
            self._refreshed_at = float("-inf")
        for shard_id in list(self.readers):
            if shard_id not in held:
                self._drop(shard_id)
        for shard in self._shards:
            if shard.shard_id in held and shard.shard_id not in self.readers:
                self._open(shard, self._incarnation)

    def _drop(self, shard_id: str) -> None:
        """Stop reading a shard another consumer now holds (it resumes from the checkpoint)."""
        self.readers.pop(shard_id, None)
        self._bound.pop(shard_id, None)

    def _open(self, shard: Shard, incarnation: str) -> None:
        stream = self.settings.input_stream
        checkpoint = self.checkpoints.get(self.name, stream, shard.shard_id)
        if checkpoint is not None and checkpoint.shard_start != shard.starting_sequence:
            # The listing may predate the shard's first record (moto then reports start 0):
            # look again before calling the checkpoint foreign and re-reading the shard.
            fresh = {s.shard_id: s for s in list_shards(self.kinesis, stream)}
            shard = fresh.get(shard.shard_id, shard)
        after, why = resume_after(checkpoint, incarnation, shard)
        start = "TRIM_HORIZON" if why else self.settings.start_position
        if start == "LATEST":
            # Not Kinesis's LATEST: a shard reopened without a checkpoint (after a failed put,
            # a lease hand-over, a reshard's child, a recreated stream) would skip every
            # record that arrived since the consumer started.
            start = "AT_TIMESTAMP"
        self.readers[shard.shard_id] = ShardReader(
            self.kinesis, stream, shard.shard_id, after, start, self._started_at
        )
        # A resumed shard has records, so its listed start is final; a fresh one binds later.
        self._bound[shard.shard_id] = _Bound(
            incarnation, shard.starting_sequence if after else None
        )
        if why:
            self._say(f"{shard.shard_id}: {why}; reading it from TRIM_HORIZON")
        else:
            self._say(
                f"reading {shard.shard_id} {f'after {after}' if after else self._position(start)}"
            )

    def _start_stamp(self, stream: str) -> float:
        """Return when this consumer started, in the endpoint's clock where it tells it."""
        if self.settings.start_position != "LATEST":
            return self._clock()  # only LATEST reads the stamp
        server = server_time(self.kinesis, stream)
        if server is None:
            self._say(
                "the Kinesis endpoint sends no usable Date header (a GMT time, RFC 9110): "
                "LATEST counts from this host's "
                f"clock less {_CLOCK_MARGIN:g} s, so a clock further ahead of the endpoint's "
                "skips the records that arrive in between"
            )
            return self._clock() - _CLOCK_MARGIN
        return server - _CLOCK_MARGIN

    def _position(self, start: str) -> str:
        if start != "AT_TIMESTAMP":
            return f"at {start}"
        assert self._started_at is not None  # set by refresh_shards, before any shard opens
        since = time.strftime("%H:%M:%S", time.localtime(self._started_at))
        return f"at LATEST (every record that arrived since {since})"

    def _bind(self, shard_ids: list[str]) -> None:
        """Record the starting sequence number of shards whose first records were just read.

        Kinesis fixes it when the shard is created; some emulators (moto) report the first
        record's number instead, so it is read once the shard has records and kept.
        """
        unbound = [s for s in shard_ids if self._bound[s].shard_start is None]
        if not unbound:
            return
        starts = {
            s.shard_id: s.starting_sequence
            for s in list_shards(self.kinesis, self.settings.input_stream)
        }
        for shard_id in unbound:
            if shard_id not in starts:
                raise StreamError(
                    f"{shard_id} is no longer listed in {self.settings.input_stream!r}"
                )
            self._bound[shard_id].shard_start = starts[shard_id]

    def handle(self, batch: list[tuple[str, list[InputRecord]]]) -> None:
        """Predict one batch (records of several shards), put everything, then checkpoint."""
        records = [record for _, shard_records in batch for record in shard_records]
        result = self.service.process(records)
        attempts = self.settings.put_attempts
        # One PutRecords for the whole round, not one per shard: calls, not records, cost most.
        put_records(self.kinesis, self.settings.output_stream, result.outputs, attempts)
        put_records(self.kinesis, self.settings.dlq_stream, result.dead_letters, attempts)
        self._bind([shard_id for shard_id, _ in batch])
        for shard_id, shard_records in batch:
            if self.leases is not None and not self.leases.confirm(shard_id):
                # Taken over while this batch was in flight: its new owner re-reads from the
                # last checkpoint, so these rides repeat (at most one batch), none is lost.
                self._drop(shard_id)
                continue
            sequence = shard_records[-1].sequence
            bound = self._bound[shard_id]
            if sequence is not None:
                checkpoint = Checkpoint(sequence, bound.incarnation, bound.shard_start or "")
                self.checkpoints.save(self.name, self.settings.input_stream, shard_id, checkpoint)
        self.stats.records += len(records)
        self.stats.predictions += len(result.outputs)
        self.stats.dead_letters += len(result.dead_letters)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(records))

    def _rewind(self, shard_id: str) -> None:
        """Forget a shard's read position so it resumes from its checkpoint."""
        self.readers.pop(shard_id, None)
        self._bound.pop(shard_id, None)
        self._refreshed_at = float("-inf")

    def _failed(self, what: str, exc: Exception, shard_ids: list[str]) -> None:
        """Count a failure, rewind the shards involved, and say so if the state changed."""
        self.stats.errors += 1
        self._failures_in_row += 1
        for shard_id in shard_ids:
            self._rewind(shard_id)
        key = _reason(exc)
        if key != self._failing_key:
            if self._failing_key is None:
                self._failing_since = time.monotonic()
            self._failing_key = key
            self._say(f"{what} failed: {exc}; retrying from the checkpoints with backoff")
        self.failing = f"{what}: {exc}"

    def _succeeded(self) -> None:
        if self._failing_key is not None:
            seconds = time.monotonic() - self._failing_since
            self._say(f"recovered after {seconds:.1f} s ({self._failures_in_row} failed attempts)")
        self._failing_key = None
        self.failing = None
        self._failures_in_row = 0

    def backoff(self) -> float:
        """Return the seconds to wait before the next attempt (0 when healthy)."""
        if not self._failures_in_row:
            return 0.0
        return min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** (self._failures_in_row - 1))

    def poll_once(self) -> int:
        """Read every shard once, handle what came as one batch; return the records handled.

        A batch holds at most ``batch_size`` records (``batch_size // shards`` per shard, at
        least one), so a crash repeats at most that many rides. Failures are recorded (see
        :attr:`failing`), never raised.
        """
        if time.monotonic() - self._refreshed_at > self.settings.shard_refresh:
            try:
                self.refresh_shards()
            except Exception as exc:  # the endpoint or the stream may come back
                self._failed(f"listing {self.settings.input_stream}", exc, [])
                return 0
        elif self.leases is not None:
            try:  # every poll: a released or expired lease is taken within one poll
                self._sync_leases()
            except Exception as exc:
                self._failed("syncing leases", exc, [])
                return 0
        per_shard = max(1, self.settings.batch_size // max(1, len(self.readers)))
        batch: list[tuple[str, list[InputRecord]]] = []
        read_failed = False
        for shard_id, reader in list(self.readers.items()):
            try:
                records = reader.read(per_shard)
            except CheckpointOutOfRange as exc:
                self._say(f"{exc}; reading {shard_id} from TRIM_HORIZON")
                self.readers[shard_id] = ShardReader(
                    self.kinesis, reader.stream, shard_id, None, "TRIM_HORIZON"
                )
                self._bound[shard_id].shard_start = None
                continue
            except Exception as exc:  # never crash on a flaky endpoint: that shard waits
                self._failed(f"reading {shard_id}", exc, [shard_id])
                read_failed = True
                continue
            if reader.closed and not records and self.leases is not None:
                self.leases.finish(shard_id)  # its last batch is checkpointed: children may start
                self._drop(shard_id)
            if records:
                batch.append((shard_id, records))
        if not batch:
            if not read_failed:
                self._succeeded()
            return 0
        try:
            self.handle(batch)
        except Exception as exc:  # a put that stayed failed: nothing was checkpointed
            self._failed("writing", exc, [shard_id for shard_id, _ in batch])
            return 0
        if not read_failed:
            self._succeeded()
        return sum(len(records) for _, records in batch)

    def start(self, stop: threading.Event, timeout: float | None = None) -> None:
        """Wait until the input stream answers, at most ``timeout`` s; raise if it never does."""
        timeout = self.settings.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                self.refresh_shards()
                return
            except Exception as exc:
                if stop.is_set() or time.monotonic() >= deadline:
                    where = self.settings.endpoint_url or "AWS"
                    raise StreamError(
                        f"Kinesis at {where} did not answer within {timeout:g} s: {exc}"
                    ) from exc
                if not waited:
                    self._say(f"waiting up to {timeout:g} s for Kinesis: {exc}")
                    waited = True
                stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def run(self, stop: threading.Event) -> ConsumerStats:
        """Consume until ``stop`` is set; the batch in flight is finished and checkpointed."""
        self._say(
            f"{self.settings.input_stream} -> {self.settings.output_stream} "
            f"(dead letters: {self.settings.dlq_stream})"
        )
        reported_at, reported = time.monotonic(), 0
        while not stop.is_set():
            handled = self.poll_once()
            now = time.monotonic()
            if self.stats.records != reported and now - reported_at >= _REPORT_EVERY:
                self._say(self.stats.line())
                reported_at, reported = now, self.stats.records
            if self.failing:
                stop.wait(self.backoff())
            elif handled == 0:
                stop.wait(self.settings.poll_interval)
        if self.leases is not None:
            try:  # hand the shards over at once instead of after the lease timeout
                self.leases.release_all()
            except Exception as exc:
                self._say(f"could not release the leases (they expire instead): {exc}")
        self.log(f"consumer {self.name} stopped: {self.stats.line()}")
        return self.stats


def stop_on_signals(stop: threading.Event) -> None:
    """Set ``stop`` on SIGTERM and SIGINT so the consumer finishes its batch and exits."""

    def _handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
