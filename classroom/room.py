"""The room: one ride generator feeding the three lanes, the reference check, the scenarios."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from deploy_modes.classroom.batch_lane import BatchLane
from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.rides import Generator, RidePool
from deploy_modes.classroom.settings import MAX_RATE, ClassroomSettings
from deploy_modes.classroom.state import LaneState, RoomState, ScenarioState
from deploy_modes.classroom.stream_lane import StreamLane
from deploy_modes.classroom.web_lane import WebLane
from deploy_modes.core.artifact import Trust, load_model
from deploy_modes.core.errors import DeployError

__all__ = ["Room", "ScenarioBusy", "UnknownScenario"]

Say = Callable[[str], None]
_SAMPLE_EVERY = 1.0  # seconds between two measurements of the lanes


class ScenarioBusy(DeployError):
    """Another scenario is running."""


class UnknownScenario(DeployError):
    """No scenario has that name."""


class Room:
    """Start the three modes on one stream of generated rides; run scenarios one at a time."""

    def __init__(
        self,
        settings: ClassroomSettings,
        model: str,
        workdir: Path,
        log_dir: Path,
        say: Say,
        trust: Trust | None = None,
        runtime: str = "local",
    ) -> None:
        self.settings = settings
        self.model = model
        self.workdir = workdir
        self.log_dir = log_dir
        self.say = say
        self.trust = trust or Trust.from_settings()
        self.started = time.monotonic()
        self.version = load_model(model, self.trust).version
        self.models: dict[str, str] = {self.version: model}
        self.checker = Checker(self.models, self.trust)
        self.pool: RidePool | None = None
        self.runtime = runtime
        if runtime == "compose":  # the same lanes; only how their processes start and die differs
            from deploy_modes.classroom.compose_lanes import (
                ComposeStreamLane,
                ComposeWebLane,
                StagedModels,
            )

            self.staged = StagedModels(self.trust)
            self.web: WebLane = ComposeWebLane(
                model, settings.web_workers, log_dir, self.clock, self.checker, self.trust
            )
            self.stream: StreamLane = ComposeStreamLane(
                model, log_dir, workdir, self.clock, self.checker, self.staged
            )
        else:
            self.web = WebLane(model, settings.web_workers, log_dir, self.clock, self.checker)
            self.stream = StreamLane(model, log_dir, workdir, self.clock, self.checker)
        self.batch: BatchLane | None = None
        self.generator: Generator | None = None
        self.base_rate = settings.rate
        self.current: ScenarioState | None = None
        self.history: list[ScenarioState] = []
        self._scenario_lock = threading.Lock()
        self.events: list[tuple[float, str]] = []  # (time, what happened): the report's timeline
        self._lanes: list[LaneState] | None = None  # the sampler's last measurement
        self._lanes_lock = threading.Lock()
        self._stop = threading.Event()

    def clock(self) -> float:
        """Return seconds since the room started."""
        return time.monotonic() - self.started

    def start(self) -> None:
        """Start every mode, then the rides."""
        self.say(f"preparing {self.settings.pool:,} rides every mode can score")
        self.pool = RidePool(self.settings.pool, 42, self.workdir)
        lane = (self.pool, self.settings.batch_interval, self.log_dir, self.workdir)
        if self.runtime == "compose":
            from deploy_modes.classroom.compose_lanes import ComposeBatchLane

            self.batch = ComposeBatchLane(self.model, *lane, self.clock, self.checker, self.staged)
        else:
            self.batch = BatchLane(self.model, *lane, self.clock, self.checker)
        self.checker.start()
        where = "compose stacks" if self.runtime == "compose" else "local processes"
        self.say(f"runtime: {self.runtime} ({where})")
        self.say(f"web: starting gunicorn ({self.settings.web_workers} workers)")
        self.web.start()
        self.say(f"stream: starting the Kinesis emulator and {self.settings.consumers} consumers")
        self.stream.start(self.settings.consumers)
        self.say(f"batch: a run every {self.settings.batch_interval:.0f} s")
        self.batch.start()
        self.generator = Generator(
            self.pool,
            [self.web.submit, self.stream.submit, self.batch.submit],
            self.clock,
            self.base_rate,
        )
        self.generator.start()
        threading.Thread(target=self._sampler, name="lane-sampler", daemon=True).start()
        self.event(f"started at {self.base_rate:g} rides/s")

    def event(self, what: str) -> None:
        """Keep a line for the report's timeline."""
        self.events.append((self.clock(), what))

    def set_rate(self, rate: float) -> float:
        """Set the generator's base rate (rides per second)."""
        if not 0 < rate <= MAX_RATE:
            raise DeployError(f"rate {rate:g} is out of range: give 0 < rate <= {MAX_RATE:g}")
        assert self.generator is not None
        self.base_rate = rate
        if self.current is None or self.current.name != "spike":
            self.generator.rate = rate
        self.event(f"rate set to {rate:g} rides/s")
        return rate

    def state(self) -> RoomState:
        """Return what the page shows now."""
        from deploy_modes.classroom.scenarios import SCENARIOS

        now = self.clock()
        assert self.generator is not None
        with self._lanes_lock:
            lanes = self._lanes if self._lanes is not None else self._sample()
        latest = list(self.models)[-1]  # the last one deployed
        return RoomState(
            elapsed_s=round(now, 1),
            rate=self.generator.rate,
            base_rate=self.base_rate,
            max_rate=MAX_RATE,
            sent=self.generator.sent,
            model_version=latest,
            scenarios=list(SCENARIOS),
            lanes=lanes,
            current=self.current,
            history=list(self.history),
        )

    def _sample(self) -> list[LaneState]:
        """Measure the three lanes now (their memory, backlog and windows)."""
        now = self.clock()
        assert self.batch is not None
        return [self.web.state(now), self.stream.state(now), self.batch.state(now)]

    def _sampler(self) -> None:
        # Once a second whoever looks: the charts' backlog has a point for every second,
        # and a page polled by a whole class costs no more than one.
        while not self._stop.wait(_SAMPLE_EVERY):
            lanes = self._sample()
            with self._lanes_lock:
                self._lanes = lanes

    def run_scenario(self, name: str) -> ScenarioState:
        """Start scenario ``name`` in a thread; refuse while another runs."""
        from deploy_modes.classroom.scenarios import SCENARIOS

        if name not in SCENARIOS:
            raise UnknownScenario(f"no scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
        with self._scenario_lock:
            if self.current is not None and self.current.running:
                raise ScenarioBusy(f"scenario {self.current.name} is still running")
            self.current = ScenarioState(name=name, running=True, started_s=round(self.clock(), 1))
        self.event(f"scenario {name} started")
        threading.Thread(
            target=self._scenario, args=(name,), name=f"scenario-{name}", daemon=True
        ).start()
        return self.current

    def phase(self, text: str) -> None:
        """Say what the running scenario does now."""
        if self.current is not None:
            self.current = self.current.model_copy(update={"phase": text})
        self.say(text)

    def _scenario(self, name: str) -> None:
        from deploy_modes.classroom.scenarios import SCENARIOS

        try:
            outcome = SCENARIOS[name](self)
            ok, explanation, numbers = outcome.ok, outcome.explanation, outcome.numbers
        except Exception as exc:  # a scenario that broke says so on the page, the room goes on
            self.say(traceback.format_exc())
            ok, explanation, numbers = False, f"The scenario stopped with an error: {exc}", {}
        assert self.current is not None
        finished = self.current.model_copy(
            update={
                "running": False,
                "finished_s": round(self.clock(), 1),
                "ok": ok,
                "explanation": explanation,
                "numbers": numbers,
                "phase": "done",
            }
        )
        self.current = finished
        self.history.append(finished)
        self.event(f"scenario {name} {'passed' if ok else 'FAILED'}")
        self.say(f"scenario {name}: {'ok' if ok else 'FAILED'}: {explanation}")

    def close(self) -> None:
        """Stop the rides, then every mode."""
        self._stop.set()
        if self.generator is not None:
            self.generator.close()
        for part in (self.web, self.stream, self.batch):
            if part is not None:
                part.close()
        self.checker.close()
