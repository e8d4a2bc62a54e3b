"""Turn a comparison into ``compare.json``, ``compare.md`` and a rich table (the png: figure.py)."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from deploy_modes.compare.agreement import TOLERANCE, Agreement
from deploy_modes.compare.result import ModeResult
from deploy_modes.compare.rides import RideSet
from deploy_modes.compare.truth import Truth

__all__ = [
    "MB",
    "TABLE_COLUMNS",
    "Report",
    "by_mode",
    "diff_text",
    "machine",
    "ratios",
    "ratios_line",
    "rich_table",
    "rides_text",
    "table_row",
    "to_json",
    "write_report",
]

PACKAGES = ("numpy", "scikit-learn", "pandas", "pyarrow", "flask", "gunicorn", "boto3", "moto")
MB = 1024 * 1024


@dataclass
class Report:
    """Everything one ``deploy compare`` run measured."""

    rides: RideSet
    results: list[ModeResult]
    agreement: Agreement
    runtime: str
    model: dict[str, Any]
    seed: int
    truth: Truth | None = None  # None: not checked against the model's own predict

    @property
    def ok(self) -> bool:
        """Return whether the modes agree and each matches the reference (when checked)."""
        return self.agreement.ok and (self.truth is None or self.truth.ok)

    def rides_text(self) -> str:
        """Return "1 ride" or "10,000 rides" for this run."""
        return rides_text(len(self.rides))


def rides_text(count: int) -> str:
    """Return "1 ride" or "10,000 rides"."""
    return f"{count:,} ride" if count == 1 else f"{count:,} rides"


def machine() -> dict[str, Any]:
    """Describe the machine and the versions the figures were measured with."""
    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "versions": versions,
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf; null means "a NaN came"


def _truth_json(truth: Truth | None) -> dict[str, Any] | None:
    if truth is None:
        return None
    return {
        "ok": truth.ok,
        "tolerance": TOLERANCE,
        "max_abs_diff": _finite(truth.max_abs_diff),
        "modes": {
            mode: {
                "rides": a.rides,
                "max_abs_diff": _finite(a.max_abs_diff),
                "over_tolerance": a.over_tolerance,
            }
            for mode, a in truth.by_mode.items()
        },
    }


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def _mode_json(result: ModeResult) -> dict[str, Any]:
    latency = result.percentiles()
    return {
        "rides": result.rides,
        "predictions": len(result.predictions),
        "startup_s": round(result.startup_s, 4),
        "wall_s": round(result.wall_s, 4),
        "throughput_rides_per_s": round(result.throughput, 1),
        "latency_ms": {key: _ms(value) for key, value in latency.items()},
        "peak_rss_mb": round(result.peak_rss_bytes / MB, 1),
        "errors": result.errors,
        "details": result.details,
    }


def ratios(report: Report, baseline: str = "web") -> dict[str, dict[str, float | None]]:
    """Return each mode's throughput and p50 latency as a multiple of ``baseline``'s (same run)."""
    modes = by_mode(report)
    base = modes.get(baseline)
    if base is None:
        return {}
    base_p50 = base.percentiles()["p50"]
    out: dict[str, dict[str, float | None]] = {}
    for mode, result in modes.items():
        p50 = result.percentiles()["p50"]
        out[mode] = {
            "throughput": round(result.throughput / base.throughput, 2)
            if base.throughput > 0
            else None,
            "latency_p50": round(p50 / base_p50, 2)
            if base_p50 > 0 and not math.isnan(p50)
            else None,
        }
    return out


def ratios_line(report: Report, baseline: str = "web") -> str:
    """Return the one-line ratios against ``baseline`` that the command prints."""
    parts = []
    for mode, figures in ratios(report, baseline).items():
        if mode == baseline:
            continue
        rate, p50 = figures["throughput"], figures["latency_p50"]
        rate_text = f"throughput x{rate:,.2f}" if rate is not None else "throughput -"
        p50_text = f"p50 latency x{p50:,.2f}" if p50 is not None else "p50 latency -"
        parts.append(f"{mode} {rate_text}, {p50_text}")
    return f"ratio vs {baseline} (same run): " + "; ".join(parts) if parts else ""


def to_json(report: Report) -> dict[str, Any]:
    """Return all figures, the machine, versions and the model, JSON-ready."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runtime": report.runtime,
        "rides": {
            "count": len(report.rides),
            "source": report.rides.source,
            "seed": report.seed,
            "dropped_by_filter": report.rides.dropped,
        },
        "model": report.model,
        "machine": machine(),
        "definitions": {
            "startup_s": "command to ready (web: /ready answers; stream: a probe ride's "
            "prediction is on the output stream; batch: process wall minus job wall)",
            "wall_s": "first ride sent (batch: job start) to last prediction",
            "latency": "web: request round trip; stream: input record arrival to "
            "prediction record arrival (moto's stamps); batch: the job's wall time",
            "peak_rss_mb": "peak summed RSS of the mode's processes, children included",
        },
        "modes": {r.mode: _mode_json(r) for r in report.results},
        "ratios_vs_web": ratios(report),
        "agreement": {
            "ok": report.agreement.ok,
            "tolerance": TOLERANCE,
            "compared": report.agreement.compared,
            "max_abs_diff": report.agreement.max_diff,
            "mismatch_count": report.agreement.mismatch_count,
            "mismatches": report.agreement.mismatches,  # the first ones; the count is exact
        },
        # Each mode against the model's own predict, scored in a separate process.
        "reference": _truth_json(report.truth),
    }


TABLE_COLUMNS = (
    "mode",
    "start s",
    "wall s",
    "rides/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "RSS MB",
    "answers",
    "vs ref",
)


def diff_text(truth: Truth | None, mode: str) -> str:
    """Return a mode's max |diff| from the reference for the tables ("-": not checked)."""
    found = truth.by_mode.get(mode) if truth is not None else None
    if found is None:
        return "-"
    return f"{found.max_abs_diff:.1e}" if found.max_abs_diff else "0"


def table_row(result: ModeResult, truth: Truth | None = None) -> list[str]:
    """Return one row of the table (rich and markdown): units in the headers."""
    latency = result.percentiles()

    def ms(value: float) -> str:
        if math.isnan(value):
            return "-"
        return f"{value * 1000:,.1f}" if value < 0.1 else f"{value * 1000:,.0f}"

    return [
        result.mode,
        f"{result.startup_s:.2f}",
        f"{result.wall_s:.2f}",
        f"{result.throughput:,.0f}",
        ms(latency["p50"]),
        ms(latency["p95"]),
        ms(latency["p99"]),
        f"{result.peak_rss_bytes / MB:,.0f}",
        f"{len(result.predictions):,}",
        diff_text(truth, result.mode),
    ]


def rich_table(report: Report) -> Table:
    """Return the side-by-side table printed at the end of a run."""
    table = Table(
        title=f"deploy compare: {rides_text(len(report.rides))}, {report.runtime} runtime",
        caption="latency: web round trip, stream put to prediction, batch job time; "
        "vs ref: max |diff| from the model's own predict",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "mode" else "right", no_wrap=True)
    for result in report.results:
        table.add_row(*table_row(result, report.truth))
    return table


def by_mode(report: Report) -> dict[str, ModeResult]:
    return {r.mode: r for r in report.results}


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """Write compare.json, compare.md and compare.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "compare.json",
        "md": out / "compare.md",
        "png": out / "compare.png",
    }
    # Each file is written beside its final name and renamed: never half a report.
    tmp_json = paths["json"].with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(to_json(report), indent=2, allow_nan=False) + "\n")
    from deploy_modes.compare.markdown import write_markdown

    tmp_md = paths["md"].with_suffix(".md.tmp")
    write_markdown(report, tmp_md)
    from deploy_modes.compare.figure import write_png

    tmp_png = paths["png"].with_suffix(".tmp.png")
    write_png(report, tmp_png)
    for key, tmp in (("json", tmp_json), ("md", tmp_md), ("png", tmp_png)):
        tmp.replace(paths[key])
    return paths
