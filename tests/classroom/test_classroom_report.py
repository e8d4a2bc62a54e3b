"""The report from a room state: every lane in the table, every scenario with its numbers."""

from __future__ import annotations

from pathlib import Path

from deploy_modes.classroom.report import write_report
from deploy_modes.classroom.state import LaneState, RoomState, ScenarioState, Series


def _lane(mode: str, mismatches: int = 0) -> LaneState:
    return LaneState(
        mode=mode,
        title=mode.title(),
        status="ok",
        status_text="fine",
        rides_in=100,
        predictions_out=90,
        throughput=20.0,
        p50_ms=1.5,
        p99_ms=None,
        backlog=10,
        backlog_label="waiting",
        errors=1,
        checked=90,
        mismatches=mismatches,
        version="abc",
        versions={"abc": 90},
        memory_mb=120.0,
        processes=3,
        detail="",
        series=Series(t=[0.0, 1.0], throughput=[10.0, 20.0], p99_ms=[None, 3.0], backlog=[0, 10]),
    )


def test_report_has_every_lane_and_scenario(tmp_path: Path) -> None:
    state = RoomState(
        elapsed_s=61.0,
        rate=20,
        base_rate=20,
        max_rate=50.0,
        sent=1200,
        model_version="abc",
        scenarios=["kill"],
        lanes=[_lane("web"), _lane("stream", mismatches=2), _lane("batch")],
        history=[
            ScenarioState(
                name="kill",
                running=False,
                started_s=10,
                finished_s=30,
                ok=False,
                explanation="A ride was lost.",
                numbers={"stream_lost": 1},
            )
        ],
    )
    markdown, chart = write_report(state, tmp_path / "out")
    text = markdown.read_text()
    assert "| Web | 100 | 90 | 20.0 | 1.5 ms | - | 10 | 1 | 90 | 0 | abc | 120 MB |" in text
    assert "| Stream | 100 | 90 | 20.0 | 1.5 ms | - | 10 | 1 | 90 | 2 | abc | 120 MB |" in text
    assert "### kill (FAILED, 10-30 s)" in text
    assert "A ride was lost." in text and "| stream_lost | 1 |" in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
