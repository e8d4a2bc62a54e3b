"""``compare.md``: the table, the "when to choose which" advice and the mismatches."""

from __future__ import annotations

from pathlib import Path

from deploy_modes.compare.report import (
    MB,
    TABLE_COLUMNS,
    Report,
    by_mode,
    machine,
    ratios_line,
    rides_text,
    table_row,
)

__all__ = ["choose_paragraph", "truth_sentence", "write_markdown"]


def choose_paragraph(report: Report) -> str:
    """Return the "when to choose which" advice, quoting this run's figures."""
    modes = by_mode(report)
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
            f"clients ({w.throughput:,.0f} rides/s, {w.peak_rss_bytes / MB:,.0f} MB for "
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
        else f"The modes disagreed on {report.agreement.mismatch_count:,} rides: see below."
    )
    return "\n\n".join([*parts, verdict, truth_sentence(report)])


def truth_sentence(report: Report) -> str:
    """Return whether the predictions are the model's own, quoting the largest gap."""
    truth = report.truth
    if truth is None:
        return "Not checked against the model's own `predict`."
    if truth.ok:
        return (
            f"Every mode gave the model's own `predict` (max |diff| {truth.max_abs_diff:.1e}, "
            "tolerance 1e-9), scored again in a separate process."
        )
    wrong = ", ".join(
        f"{mode} on {a.over_tolerance:,} rides (max |diff| {a.max_abs_diff:.3g})"
        for mode, a in truth.wrong().items()
    )
    return f"**Wrong predictions**: differ from the model's own `predict`: {wrong}."


def write_markdown(report: Report, path: Path) -> None:
    """Write the table, the advice and any mismatches as markdown."""
    header = "| " + " | ".join(TABLE_COLUMNS) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"
    rows = ["| " + " | ".join(table_row(r, report.truth)) + " |" for r in report.results]
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
        "ends). Start-up = command to ready. vs ref = the largest |diff| from the model's own "
        "`predict`, scored in a separate process.",
        "",
        ratios_line(report),
        "",
        "## When to choose which",
        "",
        choose_paragraph(report),
    ]
    if report.agreement.mismatches:
        shown = len(report.agreement.mismatches)
        lines += ["", "## Mismatches", ""]
        if report.agreement.mismatch_count > shown:
            lines += [f"The first {shown} of {report.agreement.mismatch_count:,}:", ""]
        lines += ["| ride_id | batch | web | stream | reason |"]
        lines.append("|---|---|---|---|---|")
        for m in report.agreement.mismatches:
            cells = [m.get("ride_id"), m.get("batch"), m.get("web"), m.get("stream")]
            lines.append("| " + " | ".join(str(c) for c in cells) + f" | {m['reason']} |")
    path.write_text("\n".join(lines) + "\n")
