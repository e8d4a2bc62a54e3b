"""The batch mode measured: ``deploy batch`` on the rides' month, one job per run."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy_modes.compare.local import deploy_args, stopped
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.result import ModeResult, Say
from deploy_modes.compare.rides import RIDE_MONTH, RideSet
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.launch.processes import ManagedProcess

__all__ = ["LocalBatch", "batch_result", "batch_summary"]


@dataclass
class LocalBatch:
    """Run ``deploy batch`` on the rides' month; every ride's latency is the job's wall time."""

    model: str
    workdir: Path
    log_dir: Path
    say: Say
    mode: str = "batch"
    trust: Trust | None = None  # None: the environment's DEPLOY_TRUST_* reach the child

    def run(self, rides: RideSet) -> ModeResult:
        """Run the job, read its predictions back; the process is stopped whatever happens."""
        import pyarrow.parquet as pq

        output = self.workdir / "batch" / "predictions.parquet"
        log = self.log_dir / "batch.log"
        log.unlink(missing_ok=True)
        args = [
            *deploy_args(),
            *("batch", "--runtime", "local", "--month", RIDE_MONTH),
            *("--input", str(rides.path), "--output", str(output)),
            *("--model", self.model, "--json"),
        ]
        self.say(f"batch: deploy batch --month {RIDE_MONTH} on {len(rides):,} rides")
        process: ManagedProcess | None = None
        memory: PeakMemory | None = None
        started = time.perf_counter()
        try:
            env = {"COLUMNS": "200", **(self.trust.env() if self.trust else {})}
            process = ManagedProcess("deploy batch", args, env=env, log_path=log)
            memory = PeakMemory(process.pid)
            code = process.popen.wait()
            total = time.perf_counter() - started
            memory.sample()
        finally:
            peak = stopped(process, memory)
        if code != 0:
            raise DeployError(f"the batch job exited with code {code}" + process.tail(10))
        summary = batch_summary(log)
        table = pq.read_table(output, columns=["ride_id", "predicted_duration"])
        return batch_result(len(rides), table, summary, total, peak, process_wall_s=total)


def batch_result(
    ride_count: int,
    table: Any,
    summary: dict[str, Any],
    total_s: float,
    peak: int,
    **details: Any,
) -> ModeResult:
    """Turn the batch job's output table and ``--json`` summary into the mode's result."""
    job = float(summary.get("seconds") or total_s)
    predictions = dict(
        zip(
            table.column("ride_id").to_pylist(),
            table.column("predicted_duration").to_pylist(),
            strict=True,
        )
    )
    errors = []
    dropped = sum((summary.get("rows_dropped") or {}).values())
    if dropped:
        errors.append(f"the batch job dropped {dropped} rides: {summary['rows_dropped']}")
    return ModeResult(
        mode="batch",
        rides=ride_count,
        # Command to "ready" = interpreter, imports and model load before the job starts.
        startup_s=max(total_s - job, 1e-6),
        wall_s=job,
        latencies_s=np.full(len(predictions), job),
        peak_rss_bytes=peak,
        predictions=predictions,
        errors=errors,
        details={**details, "rows_read": summary.get("rows_read")},
    )


def batch_summary(log: Path | str) -> dict[str, Any]:
    """Return the job's ``--json`` summary line from its log file (or its output text)."""
    text = log.read_text(errors="replace") if isinstance(log, Path) else log
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return dict(json.loads(line))
    raise DeployError(f"the batch job printed no summary (log: {log})")
