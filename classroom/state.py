"""What the classroom page reads: one snapshot of the three lanes, the ride rate and scenarios.

``GET /api/state`` answers :class:`RoomState` as JSON; the page (static/app.js) and
``deploy classroom scenario|report`` read it. These models are the one definition of it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["LaneState", "RoomState", "ScenarioState", "Series"]


class Series(BaseModel):
    """The last minute or so, one point per second (oldest first): what the charts draw."""

    t: list[float] = Field(default_factory=list, description="seconds since the room started")
    throughput: list[float] = Field(default_factory=list, description="predictions per second")
    p99_ms: list[float | None] = Field(default_factory=list, description="None: no prediction")
    backlog: list[int] = Field(default_factory=list)


class LaneState(BaseModel):
    """One mode's lane: what went in, what came out, how fast, what waits, what went wrong."""

    mode: str = Field(description="web, stream or batch")
    title: str
    status: str = Field(description="ok, busy (backlog growing), down (a part is restarting), red")
    status_text: str = Field(description="one sentence saying why the status is what it is")
    rides_in: int
    predictions_out: int
    throughput: float = Field(description="predictions per second over the last 5 s")
    p50_ms: float | None = Field(description="ride in -> prediction out, over the last 10 s")
    p99_ms: float | None
    backlog: int
    backlog_label: str = Field(description="what the backlog counts, in this mode's words")
    backlog_detail: dict[str, int] = Field(
        default_factory=dict, description="stream: lag per shard; web: per worker; batch: empty"
    )
    errors: int
    checked: int = Field(description="predictions compared with the model's own predict")
    mismatches: int = Field(description="> 0 turns the lane red")
    version: str | None = Field(description="the model version that answered last")
    versions: dict[str, int] = Field(default_factory=dict, description="answers per version")
    memory_mb: float
    processes: int
    detail: str = Field(description="e.g. '2 workers', '2 consumers, 2 shards', 'next run in 7 s'")
    series: Series = Field(default_factory=Series)


class ScenarioState(BaseModel):
    """A scenario: running, or finished with its measured explanation and checks."""

    name: str
    running: bool
    started_s: float
    finished_s: float | None = None
    phase: str = Field(default="", description="what it is doing now, one short sentence")
    ok: bool | None = Field(default=None, description="None while running")
    explanation: str = Field(default="", description="one paragraph, numbers from this run")
    numbers: dict[str, float | int | str] = Field(default_factory=dict)


class RoomState(BaseModel):
    """The whole page: the generator's rate, the three lanes, the scenarios run so far."""

    elapsed_s: float
    rate: float = Field(description="rides per second the generator sends now")
    base_rate: float = Field(description="the rate the page set (a spike multiplies it)")
    max_rate: float = Field(description="the highest base rate the room accepts")
    sent: int
    model_version: str
    scenarios: list[str] = Field(description="the names the buttons and the CLI take")
    lanes: list[LaneState]
    current: ScenarioState | None = None
    history: list[ScenarioState] = Field(default_factory=list)
