"""One comparison run: the rides, each mode's runner in turn, agreement, the report files."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deploy_modes.compare.agreement import agreement
from deploy_modes.compare.report import Report, write_report
from deploy_modes.compare.result import ModeRunner, ProgressFactory, Say
from deploy_modes.compare.rides import prepare_rides
from deploy_modes.compare.settings import CompareSettings
from deploy_modes.compare.truth import reference_predictions, truth
from deploy_modes.core.artifact import Trust
from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import is_http, is_s3
from deploy_modes.launch.processes import sigterm_as_interrupt

__all__ = [
    "DEFAULT_OUT",
    "DEFAULT_RIDES",
    "CompareRun",
    "Outcome",
    "check_paths",
    "run_compare",
]

DEFAULT_RIDES = CompareSettings.model_fields["rides"].default
DEFAULT_OUT = CompareSettings.model_fields["out"].default


@dataclass(frozen=True)
class CompareRun:
    """What to compare: how many rides from where, which model, each mode's knobs."""

    model: str
    rides: int = DEFAULT_RIDES
    out: Path = DEFAULT_OUT
    input: str | None = None
    seed: int = 42
    concurrency: int = 8
    workers: int | None = None
    shards: int = 2
    runtime: str = "local"  # local or compose (already resolved)
    trust: Trust | None = None  # None: what the DEPLOY_TRUST_* environment grants


@dataclass(frozen=True)
class Outcome:
    """The report of a run, where its files and logs are."""

    report: Report
    paths: dict[str, Path]
    log_dir: Path


def _check_out(out: Path) -> None:
    """Fail before anything starts when ``out`` cannot hold the report."""
    if out.exists() and not out.is_dir():
        raise DeployError(f"--out {out} is a file: give a directory")
    for parent in out.parents:  # the first existing ancestor must be a directory
        if parent.exists():
            if not parent.is_dir():
                raise DeployError(f"--out {out}: {parent} is a file, not a directory")
            break


def _check_input(source: str | None) -> None:
    """Fail before anything starts when a local ``source`` is not a file (URLs are read later)."""
    if source and not is_s3(source) and not is_http(source):
        if Path(source).is_dir():
            raise DeployError(f"--input {source} is a directory: give a TLC parquet month file")
        if not Path(source).is_file():
            raise DeployError(f"--input {source} does not exist: give a TLC parquet month")


def check_paths(out: Path, source: str | None) -> None:
    """Fail before anything starts (a demo model trained, say) on an unusable --out or --input."""
    _check_out(out)
    _check_input(source)


def _make_out(out: Path) -> Path:
    """Create ``out`` and its ``logs`` directory; return the logs directory."""
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"cannot create --out {out}: {exc.strerror}") from None
    return out / "logs"


def _runners(
    run: CompareRun, workdir: Path, log_dir: Path, say: Say, progress: ProgressFactory
) -> list[ModeRunner]:
    """Return batch, web and stream runners for the run's runtime, in the order they run."""
    if run.runtime == "compose":
        from deploy_modes.compare.compose import (
            ComposeBatch,
            ComposeStream,
            ComposeWeb,
            refuse_running,
        )

        if "://" in run.model:
            raise DeployError("the compose runtime mounts a local model: pass a local --model")
        for mode in ("batch", "web", "stream"):  # before building anything: fail fast
            refuse_running(mode)
        say("compose runtime: each stack is built, brought up, measured and taken down in turn")
        return [
            ComposeBatch(run.model, say, trust=run.trust),
            ComposeWeb(run.model, say, progress, run.concurrency, run.workers, trust=run.trust),
            ComposeStream(run.model, say, progress, run.shards, trust=run.trust),
        ]
    from deploy_modes.compare.batch import LocalBatch
    from deploy_modes.compare.stream import LocalStream
    from deploy_modes.compare.web import LocalWeb

    return [
        LocalBatch(run.model, workdir, log_dir, say, trust=run.trust),
        LocalWeb(run.model, log_dir, say, progress, run.concurrency, run.workers, trust=run.trust),
        LocalStream(run.model, workdir, log_dir, say, progress, run.shards, trust=run.trust),
    ]


def run_compare(run: CompareRun, say: Say, progress: ProgressFactory) -> Outcome:
    """Run the three modes on the same rides, check they agree, write the report."""
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.naming import DURATION

    check_paths(run.out, run.input)
    trust = run.trust or Trust.from_settings()
    loaded = load_model(run.model, trust)  # a broken model fails here, in one line, before any mode
    loaded.check_target((DURATION,))  # the three modes are compared on durations
    location = run.model
    if "://" not in location:
        location = str(Path(location).resolve())  # the children run with the same cwd, but be safe
    say(f"model {loaded.name} version {loaded.version} from {location}")
    log_dir = _make_out(run.out)
    workdir = Path(tempfile.mkdtemp(prefix="deploy-compare-"))
    try:
        with sigterm_as_interrupt():
            rides = prepare_rides(run.rides, run.seed, workdir, run.input)
            dropped = f" ({rides.dropped:,} rows skipped by the filter)" if rides.dropped else ""
            say(f"{len(rides):,} rides from {rides.source}{dropped}")
            resolved = CompareRun(**{**run.__dict__, "model": location, "trust": trust})
            results = [r.run(rides) for r in _runners(resolved, workdir, log_dir, say, progress)]
            say("reference: the model's own predict on the same rides, in a separate process")
            reference = reference_predictions(location, rides, workdir, trust)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = Report(
        rides=rides,
        results=results,
        agreement=agreement(rides, results),
        runtime=run.runtime,
        model={"name": loaded.name, "version": loaded.version, "location": location},
        seed=run.seed,
        truth=truth(results, reference),
    )
    return Outcome(report=report, paths=write_report(report, run.out), log_dir=log_dir)
