"""The truth to compare against: the model's own ``predict``, in a process of its own.

``deploy compare`` checks that the modes agree with each other; this checks that they agree
with the model. :func:`reference_durations` scores rides the slow, obvious way (one feature
dict per ride, ``pipeline.predict``) and shares no scoring code with the service. Run it as

    python -m deploy_modes.core.reference MODEL RIDES.parquet OUT.parquet [--trust-pickle]

(or through :func:`score_in_separate_process`) so nothing in the comparing process, no cache
and no shortcut, can leak into the reference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy_modes.core.artifact import Trust, load_model
from deploy_modes.core.errors import DeployError
from deploy_modes.core.proof import TOLERANCE
from deploy_modes.core.schemes import scheme_for

__all__ = [
    "REFERENCE_COLUMN",
    "Agreement",
    "Reference",
    "agreement",
    "main",
    "reference_durations",
    "score_in_separate_process",
]

REFERENCE_COLUMN = "reference_duration"
_RIDE_COLUMNS = ("PULocationID", "DOLocationID", "trip_distance")


@dataclass(frozen=True)
class Agreement:
    """How far scored rides are from the reference: the largest gap and how many exceed it."""

    rides: int
    max_abs_diff: float
    over_tolerance: int

    @property
    def holds(self) -> bool:
        """Return whether every ride is within the tolerance of the reference."""
        return self.over_tolerance == 0


class Reference:
    """A model loaded once, scored the slow, obvious way: one feature dict per ride."""

    def __init__(self, location: str, trust: Trust) -> None:
        loaded = load_model(location, trust)
        self.version = loaded.version
        self.pipeline = loaded.pipeline
        self.scheme = scheme_for(self.pipeline.steps[0][1].vocabulary_, location)

    def durations(
        self, pu: Sequence[int], do: Sequence[int], distance: Sequence[float]
    ) -> np.ndarray:
        """Return ``pipeline.predict`` on one feature dict per ride, built from the vocabulary."""
        dicts = [
            self.scheme.ride_features(int(p), int(d), float(x))
            for p, d, x in zip(pu, do, distance, strict=True)
        ]
        if not dicts:
            return np.empty(0, dtype="float64")
        return np.asarray(self.pipeline.predict(dicts), dtype="float64")


def reference_durations(
    location: str, pu: Sequence[int], do: Sequence[int], distance: Sequence[float], trust: Trust
) -> np.ndarray:
    """Return ``pipeline.predict`` on one feature dict per ride, built from the vocabulary."""
    return Reference(location, trust).durations(pu, do, distance)


def agreement(scored: Sequence[float], reference: Sequence[float]) -> Agreement:
    """Compare scored durations with the reference; a NaN on either side is a disagreement."""
    ours = np.asarray(scored, dtype="float64")
    truth = np.asarray(reference, dtype="float64")
    if ours.shape != truth.shape:
        raise ValueError(f"{len(ours)} scored rides but {len(truth)} reference rides")
    diff = np.abs(ours - truth)
    bad = np.isnan(diff) | (diff > TOLERANCE)
    worst = float("inf") if np.isnan(diff).any() else float(diff.max(initial=0.0))
    return Agreement(len(ours), worst, int(np.count_nonzero(bad)))


def score_in_separate_process(
    location: str, rides: Path, out: Path, trust_pickle: bool = False, trust: Trust | None = None
) -> None:
    """Run the reference scorer in a fresh Python process; raise DeployError if it fails.

    ``trust`` (default: the environment's) reaches the child as its ``DEPLOY_*`` variables.
    """
    command = [sys.executable, "-m", "deploy_modes.core.reference", location, str(rides), str(out)]
    if trust_pickle:
        command.append("--trust-pickle")
    env = {**os.environ, **(trust or Trust.from_settings()).env()}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1].removeprefix("error: ") if lines else f"exit code {done.returncode}"
        raise DeployError(f"the reference scorer failed: {last}")


def main(argv: Sequence[str] | None = None) -> int:
    """Score a parquet file of rides with the model's own predict; write the reference."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model location (artifact dir, pickle, s3:// URI)")
    parser.add_argument("rides", type=Path, help=f"parquet with {', '.join(_RIDE_COLUMNS)}")
    parser.add_argument("out", type=Path, help=f"parquet to write ({REFERENCE_COLUMN})")
    parser.add_argument("--trust-pickle", action="store_true", help="load a pickle model")
    args = parser.parse_args(argv)
    try:
        try:
            table = pq.read_table(args.rides)
        except (OSError, pa.ArrowException) as exc:
            raise DeployError(f"cannot read rides from {args.rides}: {exc}") from exc
        missing = [name for name in _RIDE_COLUMNS if name not in table.column_names]
        if missing:
            raise DeployError(f"{args.rides} lacks the column(s) {', '.join(missing)}")
        trust = Trust.from_settings()
        trust = Trust(trust.pickle or args.trust_pickle, trust.types, trust.sha256)
        columns = [table.column(name).to_pylist() for name in _RIDE_COLUMNS]
        try:
            durations = reference_durations(args.model, *columns, trust=trust)
        except (TypeError, ValueError) as exc:  # e.g. a null zone: rides must be valid
            raise DeployError(f"{args.rides} holds a ride that is not valid: {exc}") from exc
        out = {REFERENCE_COLUMN: pa.array(durations, pa.float64())}
        if "ride_id" in table.column_names:
            out = {"ride_id": table.column("ride_id"), **out}
        pq.write_table(pa.table(out), args.out)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
