"""``compare.png``: throughput bars and per-mode latency distributions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy_modes.compare.report import Report

__all__ = ["write_png"]


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
        left.set_title(f"Throughput, {report.rides_text()}")
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
