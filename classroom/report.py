"""``deploy classroom report``: the room's lanes and scenarios as markdown and PNG charts."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from deploy_modes.classroom.state import LaneState, RoomState

__all__ = ["CHART", "MARKDOWN", "draw_chart", "markdown", "write_report"]

MARKDOWN = "classroom.md"
CHART = "classroom.png"


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def _lanes_table(lanes: list[LaneState]) -> list[str]:
    rows = [
        "| lane | rides in | predictions | per s | p50 | p99 | backlog | errors | checked "
        "| mismatches | version | memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lane in lanes:
        rows.append(
            f"| {lane.title} | {lane.rides_in:,} | {lane.predictions_out:,} "
            f"| {lane.throughput:,.1f} "
            f"| {_fmt(lane.p50_ms, ' ms')} | {_fmt(lane.p99_ms, ' ms')} | {lane.backlog:,} "
            f"| {lane.errors} | {lane.checked:,} | {lane.mismatches} | {lane.version or '-'} "
            f"| {lane.memory_mb:,.0f} MB |"
        )
    return rows


def draw_chart(lanes: list[LaneState], path: Path | BinaryIO) -> None:
    """Draw throughput, p99 latency and backlog per lane over the last minute, as a PNG."""
    # The object API, not pyplot: no global state, so the page's threads may draw at once.
    from matplotlib.figure import Figure

    colours = {"web": "#0072B2", "stream": "#E69F00", "batch": "#009E73"}  # Okabe-Ito
    figure = Figure(figsize=(10, 8))
    axes = figure.subplots(3, 1, sharex=True)
    for lane in lanes:
        s = lane.series
        colour = colours.get(lane.mode, "#000000")
        # Markers too: a batch run is one point between gaps, which a bare line would not draw.
        style = {"color": colour, "marker": "o", "markersize": 3}
        axes[0].plot(s.t, s.throughput, label=lane.title, **style)
        axes[1].plot(s.t, [float("nan") if v is None else v for v in s.p99_ms], **style)
        axes[2].plot(s.t, s.backlog, **style)
    axes[0].set_ylabel("predictions / s")
    axes[1].set_ylabel("p99 latency (ms)")
    axes[1].set_yscale("symlog")
    axes[2].set_ylabel("backlog (rides)")
    axes[2].set_xlabel("seconds since the room started")
    if lanes:
        axes[0].legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png")


def markdown(state: RoomState, chart: str = CHART) -> str:
    """Return the lanes' table and every scenario run so far, as markdown."""
    lines = [
        "# Classroom report",
        "",
        f"{state.elapsed_s:,.0f} s, {state.sent:,} rides sent, rate {state.base_rate:g} rides/s, "
        f"model version {state.model_version}.",
        "",
        *_lanes_table(state.lanes),
        "",
        f"![throughput, p99 latency and backlog per lane, the last minute]({chart})",
        "",
        "## Scenarios",
        "",
    ]
    if not state.history:
        lines.append("No scenario has run yet.")
    for scenario in state.history:
        verdict = "passed" if scenario.ok else "FAILED"
        lines += [
            f"### {scenario.name} ({verdict}, "
            f"{scenario.started_s:,.0f}-{scenario.finished_s or 0:,.0f} s)",
            "",
            scenario.explanation,
            "",
            "| measured | value |",
            "|---|---|",
            *[f"| {key} | {value} |" for key, value in scenario.numbers.items()],
            "",
        ]
    return "\n".join(lines) + "\n"


def write_report(state: RoomState, out: Path) -> list[Path]:
    """Write classroom.md and classroom.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    chart = out / CHART
    draw_chart(state.lanes, chart)
    text = out / MARKDOWN
    text.write_text(markdown(state, chart.name))
    return [text, chart]
