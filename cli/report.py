"""Turn a comparison into ``compare.json``, ``compare.md``, ``compare.png`` and a rich table."""

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

from deploy_modes.cli.comparison import TOLERANCE, Agreement, ModeResult, RideSet

__all__ = [
    "Report",
    "choose_paragraph",
    "machine",
    "ratios",
    "ratios_line",
    "rich_table",
    "rides_text",
    "to_json",
    "write_markdown",
    "write_png",
    "write_report",
]

PACKAGES = ("numpy", "scikit-learn", "pandas", "pyarrow", "flask", "gunicorn", "boto3", "moto")
_MB = 1024 * 1024
_COLUMNS = (
    "mode",
    "start-up",
    "wall",
    "rides/s",
    "p50",
    "p95",
    "p99",
    "peak RSS",
    "predictions",
)


@dataclass
class Report:
    """Everything one ``deploy compare`` run measured."""

    rides: RideSet
    results: list[ModeResult]
    agreement: Agreement
    runtime: str
    model: dict[str, Any]
    seed: int


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
        "peak_rss_mb": round(result.peak_rss_bytes / _MB, 1),
        "errors": result.errors,
        "details": result.details,
    }


def ratios(report: Report, baseline: str = "web") -> dict[str, dict[str, float | None]]:
    """Return each mode's throughput and p50 latency as a multiple of ``baseline``'s (same run)."""
    modes = _by_mode(report)
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
            "mismatches": report.agreement.mismatches,
        },
    }


def _row(result: ModeResult) -> list[str]:
    latency = result.percentiles()

    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value * 1000:,.1f} ms"

    return [
        result.mode,
        f"{result.startup_s:.2f} s",
        f"{result.wall_s:.2f} s",
        f"{result.throughput:,.0f}",
        ms(latency["p50"]),
        ms(latency["p95"]),
        ms(latency["p99"]),
        f"{result.peak_rss_bytes / _MB:,.0f} MB",
        f"{len(result.predictions):,}/{result.rides:,}",
    ]


_TABLE_COLUMNS = (
    "mode",
    "start s",
    "wall s",
    "rides/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "RSS MB",
    "answers",
)


def _cells(result: ModeResult) -> list[str]:
    """Return one table row: units in the headers, so the table fits 80 columns."""
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
        f"{result.peak_rss_bytes / _MB:,.0f}",
        f"{len(result.predictions):,}",
    ]


def rich_table(report: Report) -> Table:
    """Return the side-by-side table printed at the end of a run."""
    table = Table(
        title=f"deploy compare: {rides_text(len(report.rides))}, {report.runtime} runtime",
        caption="latency: web round trip, stream put to prediction, batch job time",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in _TABLE_COLUMNS:
        table.add_column(column, justify="left" if column == "mode" else "right", no_wrap=True)
    for result in report.results:
        table.add_row(*_cells(result))
    return table


def _by_mode(report: Report) -> dict[str, ModeResult]:
    return {r.mode: r for r in report.results}


def choose_paragraph(report: Report) -> str:
    """Return the "when to choose which" advice, quoting this run's figures."""
    modes = _by_mode(report)
    parts = []
    if "batch" in modes:
        b = modes["batch"]
        fastest = max(report.results, key=lambda r: r.throughput).mode == "batch"
        speed = "the highest throughput" if fastest else "a throughput"
        parts.append(
            f"**Batch** had {speed} ({b.throughput:,.0f} rides/s once started, "
            f"{b.startup_s:.1f} s to start), but every prediction waits for the whole job "
            f"({b.wall_s:.2f} s for {b.rides:,} rides here, plus the schedule's interval in "
            "production): choose it when predictions feed reports or tables on a schedule and "
            "nobody waits for one ride."
        )
    if "web" in modes:
        w = modes["web"]
        p = w.percentiles()
        parts.append(
            f"**The web service** answered each ride in p50 {p['p50'] * 1000:,.1f} ms / "
            f"p99 {p['p99'] * 1000:,.1f} ms at {w.details.get('concurrency')} concurrent "
            f"clients ({w.throughput:,.0f} rides/s, {w.peak_rss_bytes / _MB:,.0f} MB for "
            f"{w.details.get('workers')} workers): choose it when a caller (an app, another "
            "service) needs the answer now, one ride at a time."
        )
    if "stream" in modes:
        s = modes["stream"]
        p = s.percentiles()
        parts.append(
            f"**The stream consumer** delivered predictions p50 {p['p50'] * 1000:,.0f} ms / "
            f"p99 {p['p99'] * 1000:,.0f} ms after the put ({s.throughput:,.0f} rides/s with "
            f"{s.details.get('shards')} shards): choose it when rides arrive as events, "
            "producers must not wait for the model, and several consumers may react to the "
            "same predictions; the latency is mostly polling and the queue, not the model."
        )
    verdict = (
        f"All three modes gave the same prediction for every ride (max |diff| "
        f"{report.agreement.max_diff:.1e}): one model, one scoring path."
        if report.agreement.ok
        else f"The modes disagreed on {len(report.agreement.mismatches)} rides: see below."
    )
    return "\n\n".join([*parts, verdict])


def write_markdown(report: Report, path: Path) -> None:
    """Write the table, the advice and any mismatches as markdown."""
    header = "| " + " | ".join(_COLUMNS) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|"
    rows = ["| " + " | ".join(_row(r)) + " |" for r in report.results]
    info = machine()
    lines = [
        f"# deploy compare: {rides_text(len(report.rides))}",
        "",
        f"Rides: {report.rides.source}; model {report.model.get('name')} version "
        f"{report.model.get('version')}; runtime {report.runtime}; {info['cpus']} CPUs, "
        f"Python {info['python']}, {info['platform']}.",
        "",
        header,
        rule,
        *rows,
        "",
        "Latency: web = request round trip; stream = put to prediction visible on the output "
        "stream; batch = the job's wall time (a ride's prediction is written when the job "
        "ends). Start-up = command to ready.",
        "",
        ratios_line(report),
        "",
        "## When to choose which",
        "",
        choose_paragraph(report),
    ]
    if report.agreement.mismatches:
        lines += ["", "## Mismatches", "", "| ride_id | batch | web | stream | reason |"]
        lines.append("|---|---|---|---|---|")
        for m in report.agreement.mismatches:
            cells = [m.get("ride_id"), m.get("batch"), m.get("web"), m.get("stream")]
            lines.append("| " + " | ".join(str(c) for c in cells) + f" | {m['reason']} |")
    path.write_text("\n".join(lines) + "\n")


def write_png(report: Report, path: Path) -> None:
    """Plot throughput bars and per-mode latency distributions (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: never open a window, never need a GUI toolkit
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {"batch": "#4c72b0", "web": "#dd8452", "stream": "#55a868"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        names = [r.mode for r in report.results]
        rates = [max(r.throughput, 1e-3) for r in report.results]
        bars = left.bar(names, rates, color=[colors.get(n, "gray") for n in names])
        left.set_yscale("log")
        left.set_ylabel("rides/s (log scale)")
        left.set_title(f"Throughput, {rides_text(len(report.rides))}")
        for bar, rate in zip(bars, rates, strict=True):
            left.annotate(
                f"{rate:,.0f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        data = [np.maximum(r.latencies_s * 1000, 1e-3) for r in report.results]
        shown = [d if d.size else np.array([np.nan]) for d in data]
        box = right.boxplot(
            shown, tick_labels=names, whis=(1, 99), showfliers=False, patch_artist=True
        )
        for patch, name in zip(box["boxes"], names, strict=True):
            patch.set_facecolor(colors.get(name, "gray"))
            patch.set_alpha(0.6)
        for k, result in enumerate(report.results, start=1):
            p = result.percentiles()
            if not math.isnan(p["p99"]):
                right.scatter([k], [p["p99"] * 1000], marker="v", color="black", zorder=3)
        right.set_yscale("log")
        right.set_ylabel("latency per ride, ms (log scale)")
        right.set_title("Latency (box: p25-p75, whiskers p1-p99, ▼ p99)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


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
    tmp_md = paths["md"].with_suffix(".md.tmp")
    write_markdown(report, tmp_md)
    tmp_png = paths["png"].with_suffix(".tmp.png")
    write_png(report, tmp_png)
    for key, tmp in (("json", tmp_json), ("md", tmp_md), ("png", tmp_png)):
        tmp.replace(paths[key])
    return paths
