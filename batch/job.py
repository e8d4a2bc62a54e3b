"""The batch job: read an interval's rides in chunks, drop and count bad rows, score, write.

Scoring is vectorised: each chunk is validated with masks
(:func:`deploy_modes.core.validation.invalid_reasons`) and the valid rows go through
:meth:`ModelService.predict_arrays` at once, so predictions equal the web and stream modes'
row-by-row ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deploy_modes.batch.intervals import Interval
from deploy_modes.batch.readers import Chunk, Reader
from deploy_modes.batch.writers import OUTPUT_SCHEMA, Session, Writer
from deploy_modes.core.features import in_duration_range
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.validation import invalid_reasons

__all__ = ["DROP_REASONS", "BatchJob", "Progress", "ProgressFactory", "Summary", "score_chunk"]

# Every reason a row is dropped, in the order they are checked (a row counts once, first match).
DROP_REASONS = (
    "wrong_type",
    "missing_zone",
    "zone_out_of_range",
    "missing_distance",
    "distance_out_of_range",
    "missing_time",
    "duration_out_of_range",
)

Progress = Callable[[int], None]
# Called once the source is open, with its row count if known; returns the per-chunk tick.
ProgressFactory = Callable[[int | None], Progress | None]


@dataclass
class Summary:
    """What one interval's run did."""

    interval: str
    source: str
    output: str | None = None
    rows_read: int = 0
    rows_dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    rows_scored: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    model_version: str = ""

    @property
    def dropped(self) -> int:
        """Return the rows dropped for any reason."""
        return sum(self.rows_dropped.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return {
            "interval": self.interval,
            "source": self.source,
            "output": self.output,
            "rows_read": self.rows_read,
            "rows_dropped": dict(self.rows_dropped),
            "rows_scored": self.rows_scored,
            "rows_written": self.rows_written,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_read / self.seconds) if self.seconds > 0 else None,
            "model_version": self.model_version,
        }

    def line(self) -> str:
        """Return the one-line summary printed after a run."""
        reasons = ", ".join(f"{k} {v:,}" for k, v in self.rows_dropped.items() if v) or "none"
        where = self.output or "nothing written (no rows to score)"
        return (
            f"{self.interval}: read {self.rows_read:,}, dropped {self.dropped:,} ({reasons}), "
            f"scored {self.rows_scored:,}, wrote {self.rows_written:,} in {self.seconds:.2f}s "
            f"-> {where}"
        )


def score_chunk(
    chunk: Chunk, service: ModelService, id_prefix: str
) -> tuple[pa.Table, dict[str, int]]:
    """Return the chunk's valid rows scored (output schema) and the drop count per reason."""
    n = len(chunk)
    taken = np.zeros(n, dtype=bool)
    counts: dict[str, int] = {}
    checks: list[tuple[str, np.ndarray]] = [
        ("wrong_type", chunk.bad_type if chunk.bad_type is not None else taken.copy())
    ]
    checks += list(invalid_reasons(chunk.pu, chunk.do, chunk.distance).items())
    duration = chunk.duration
    missing_time = np.isnan(duration)
    checks.append(("missing_time", missing_time))
    with np.errstate(invalid="ignore"):
        in_range = in_duration_range(duration)  # the course's 1..60 minute filter
    checks.append(("duration_out_of_range", ~in_range & ~missing_time))
    for name, mask in checks:
        mask = mask & ~taken
        counts[name] = int(mask.sum())
        taken |= mask
    valid = ~taken
    pu = chunk.pu[valid].astype("int64")
    do = chunk.do[valid].astype("int64")
    actual = duration[valid]
    predicted = service.predict_arrays(pu, do, chunk.distance[valid])
    positions = np.flatnonzero(valid) + chunk.offset
    # Deterministic ids, the course homework's f"{year:04d}/{month:02d}_{row}": the row is its
    # position in the source (dropped rows included), so a rerun gives every ride the same id.
    ride_id = pc.binary_join_element_wise(
        pa.scalar(id_prefix), pc.cast(pa.array(positions), pa.string()), "_"
    )
    table = pa.Table.from_arrays(
        [
            ride_id,
            chunk.pickup.filter(pa.array(valid)),
            pa.array(pu),
            pa.array(do),
            pa.array(actual),
            pa.array(predicted),
            pa.array(actual - predicted),
            pa.repeat(service.version, len(pu)),
        ],
        schema=OUTPUT_SCHEMA,
    )
    return table, counts


class BatchJob:
    """Score one interval from a reader into a writer with one model service.

    The job owns the reader and the writer for the run: it opens the reader, and closes both
    whatever happens, so no caller has to.
    """

    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        service: ModelService,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.service = service
        self.progress = progress

    def run(self, interval: Interval) -> Summary:
        """Run the interval; nothing is written unless every chunk scored (then atomically)."""
        started = time.perf_counter()
        summary = Summary(
            interval.label, self.reader.describe(), model_version=self.service.version
        )
        session: Session | None = None
        try:
            total = self.reader.open()
            tick = self.progress(total) if self.progress is not None else None
            for chunk in self.reader.chunks():
                table, counts = score_chunk(chunk, self.service, interval.id_prefix)
                summary.rows_read += len(chunk)
                for name, count in counts.items():
                    summary.rows_dropped[name] += count
                summary.rows_scored += table.num_rows
                if table.num_rows:
                    if session is None:
                        session = self.writer.begin(interval)
                    session.write(table)
                    summary.rows_written += table.num_rows
                if tick is not None:
                    tick(len(chunk))
            if session is not None:
                session.commit()
                summary.output = self.writer.describe()
        except BaseException:
            if session is not None:
                session.abort()
            raise
        finally:
            self.reader.close()
            close = getattr(self.writer, "close", None)
            if close is not None:
                close()
        summary.seconds = time.perf_counter() - started
        return summary
