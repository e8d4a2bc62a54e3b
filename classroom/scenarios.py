"""The five scenarios: each changes something real, measures what happened, explains it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deploy_modes.classroom.stream_lane import LEASE_TIMEOUT

if TYPE_CHECKING:
    from deploy_modes.classroom.room import Room

__all__ = ["SCENARIOS", "Outcome"]

SPIKE_FACTOR = 10
SPIKE_SECONDS = 20.0
_CATCH_UP = 120.0  # seconds a lane gets to catch up before the scenario says it did not


@dataclass(frozen=True)
class Outcome:
    """What a scenario measured: passed or not, one paragraph, the numbers behind it."""

    ok: bool
    explanation: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)


def _wait(condition: Callable[[], bool], timeout: float = _CATCH_UP) -> float | None:
    """Poll ``condition``; return the seconds it took, None if it never held."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.2)
    return time.monotonic() - started


def _p99(room: Room) -> float | None:
    _, p99 = room.web.tally.window.latency_ms(room.clock(), seconds=5)
    return p99


def _ms(value: float | None) -> str:
    return "no answer yet" if value is None else f"{value:.1f} ms"


def spike(room: Room) -> Outcome:
    """Multiply the ride rate by 10 for 20 s and watch each mode take it."""
    assert room.generator is not None and room.batch is not None
    base = room.base_rate
    web_before = _p99(room)
    stream_before = room.stream.unanswered()
    batch_before = room.batch.waiting
    runs_before = len(room.batch.runs)
    room.phase(f"rides at {base * SPIKE_FACTOR:g}/s for {SPIKE_SECONDS:.0f} s")
    room.generator.rate = base * SPIKE_FACTOR
    web_peak = stream_peak = batch_peak = 0.0
    failed_before = room.web.failed_requests
    end = time.monotonic() + SPIKE_SECONDS
    while time.monotonic() < end:
        time.sleep(0.5)
        web_peak = max(web_peak, _p99(room) or 0.0)
        stream_peak = max(stream_peak, room.stream.unanswered())
        batch_peak = max(batch_peak, room.batch.waiting)
    room.generator.rate = room.base_rate
    room.phase("back to the base rate: the stream drains its lag")
    floor = max(stream_before, int(base * 2))
    drained = _wait(lambda: room.stream.unanswered() <= floor)
    web_drained = _wait(lambda: room.web.backlog <= max(10, int(base)))
    batch_runs = len(room.batch.runs) - runs_before
    failed = room.web.failed_requests - failed_before
    numbers: dict[str, float | int | str] = {
        "rate_per_s": base * SPIKE_FACTOR,
        "web_p99_before_ms": round(web_before, 1) if web_before is not None else "none",
        "web_p99_peak_ms": round(web_peak, 1),
        "web_failed_requests": failed,
        "stream_backlog_before": stream_before,
        "stream_backlog_peak": int(stream_peak),
        "stream_drain_s": round(drained, 1) if drained is not None else "never",
        "batch_waiting_before": batch_before,
        "batch_waiting_peak": int(batch_peak),
        "batch_runs_during": batch_runs,
    }
    ok = drained is not None and web_drained is not None and failed == 0
    text = (
        f"For {SPIKE_SECONDS:.0f} s rides came at {base * SPIKE_FACTOR:g}/s instead of {base:g}/s. "
        f"The web service answers each ride while its client waits: its p99 latency went from "
        f"{_ms(web_before)} to {web_peak:.1f} ms, and {failed} requests failed. "
        f"The stream decouples the rides from the model: its lag grew from {stream_before} to "
        f"{int(stream_peak)} rides and "
        + (
            f"drained {drained:.1f} s after the spike. "
            if drained is not None
            else "did NOT drain. "
        )
        + f"The batch lane did not care: {int(batch_peak)} rides piled up for the next run "
        f"({batch_runs} runs happened during the spike)."
    )
    return Outcome(ok, text, numbers)


def kill(room: Room) -> Outcome:
    """SIGKILL a web worker, a stream consumer and the batch job mid-run; measure the recovery."""
    assert room.batch is not None
    numbers: dict[str, float | int | str] = {}
    # Web: gunicorn's master sees the worker die and forks a new one.
    workers = room.web.worker_pids()
    room.phase(f"web: SIGKILL gunicorn worker {workers[0]}")
    failed_before = room.web.failed_requests
    room.web.kill_worker(workers[0])
    replaced = _wait(
        lambda: (
            len(room.web.worker_pids()) == len(workers) and workers[0] not in room.web.worker_pids()
        ),
        timeout=60,
    )
    numbers["web_worker_replaced_s"] = round(replaced, 2) if replaced is not None else "never"
    numbers["web_failed_requests"] = room.web.failed_requests - failed_before
    # Stream: the dead consumer's leases expire and the others take its shards.
    victim = room.stream.live_consumers()[0]
    number = getattr(victim, "number", 0)
    held = sorted(s for s, owner in room.stream.lease_owners().items() if owner == number)
    put_before = set(room.stream.shard_of)
    room.phase(f"stream: SIGKILL consumer {number}, which reads {len(held)} shards")
    killed_at = time.monotonic()
    room.stream.kill_consumer(victim)
    if not room.stream.live_consumers():  # a group of one: a new member takes over
        room.stream.add_consumer()
    room.phase(f"stream: its leases expire after {LEASE_TIMEOUT:g} s; the group takes them over")
    handed = _wait(
        lambda: all(room.stream.lease_owners().get(shard) not in (None, number) for shard in held)
    )
    caught_up = _wait(lambda: put_before <= room.stream.tally.answered)
    missing = put_before - room.stream.tally.answered
    numbers["stream_shards_of_killed"] = len(held)
    numbers["stream_handover_s"] = round(handed, 1) if handed is not None else "never"
    numbers["stream_caught_up_s"] = (
        round(time.monotonic() - killed_at, 1) if caught_up is not None else "never"
    )
    numbers["stream_lost"] = len(missing)
    numbers["stream_repeated_answers"] = room.stream.tally.duplicates
    room.phase("stream: a new consumer joins the group again")
    room.stream.add_consumer()
    ok_stream = handed is not None and caught_up is not None and not missing
    # Batch: one run killed mid-way, then run again on the same rides: the same output.
    with room.batch.hold:
        rides = room.batch.take()
        if not rides:
            time.sleep(1)
            rides = room.batch.take()
        last = room.batch.runs[-1].seconds if room.batch.runs else 4.0
        room.phase(f"batch: a run on {len(rides)} rides, SIGKILLed after {last / 2:.1f} s")
        broken = room.batch.run(rides, kill_after=last / 2, tag="-killed")
        room.phase("batch: the same rides run again, twice")
        rerun = room.batch.run(rides, tag="-rerun")
        again = room.batch.run(rides, tag="-again")
        # The job writes a staged file and renames it: after a SIGKILL its output is absent,
        # or complete (the kill came after the rename). Anything else is a half-written file.
        left = "none"
        if broken.output.exists():
            try:
                whole = room.batch.read(broken.output, rides) == rerun.predictions
            except Exception:  # unreadable: half-written
                whole = False
            left = "complete (the kill came after the rename)" if whole else "half-written"
        partial = left == "half-written"
        room.batch.record(rerun, rides)
        room.batch.next_run = room.clock() + room.batch.interval
    identical = rerun.code == 0 and again.code == 0 and rerun.predictions == again.predictions
    numbers["batch_killed_mid_run"] = "yes" if broken.killed else "no (it finished first)"
    numbers["batch_output_after_kill"] = left
    numbers["batch_rerun_identical"] = "yes" if identical else "no"
    numbers["batch_rides"] = len(rides)
    ok = (
        replaced is not None
        and ok_stream
        and identical
        and not partial
        and len(rerun.predictions) == len(rides)
    )
    text = (
        f"Web: gunicorn's master replaced the killed worker in "
        f"{numbers['web_worker_replaced_s']} s; {numbers['web_failed_requests']} requests failed "
        "(the ones that worker had in hand). "
        f"Stream: consumer {number} died holding {len(held)} shards' leases; after the "
        f"{LEASE_TIMEOUT:g} s lease timeout the group took them over and every ride put before "
        f"the kill was predicted {numbers['stream_caught_up_s']} s after it: {len(missing)} lost, "
        f"{room.stream.tally.duplicates} repeated answers so far (at-least-once: a batch read "
        f"but not checkpointed is read again). Batch: the job on {len(rides)} rides was "
        f"{'killed mid-run' if broken.killed else 'already done when the kill came'}; its output "
        f"after the kill: {left}. The two reruns "
        f"gave {'identical' if identical else 'DIFFERENT'} predictions for all "
        f"{len(rerun.predictions)} rides."
    )
    return Outcome(ok, text, numbers)


def emulator_restart(room: Room) -> Outcome:
    """Stop and restart the local AWS emulator; every ride is still predicted once."""
    stream = room.stream
    room.phase("holding rides back; the stream drains what it already has")
    stream.paused.set()
    drained = _wait(lambda: stream.unanswered() - stream.buffered() == 0)
    room.phase("stopping the emulator (its streams and records go with it)")
    stopped_at = time.monotonic()
    stream.stop_emulator()
    time.sleep(3)
    room.phase("starting a fresh emulator on the same port, creating the streams again")
    stream.start_emulator()
    down = time.monotonic() - stopped_at
    held = stream.buffered()
    first_id = min((r.ride_id for r in stream._buffer), default=0)
    stream.paused.clear()
    room.phase(f"{held} rides held during the outage go in now; the consumers start over")
    caught_up = _wait(lambda: stream.unanswered() <= max(20, int(room.base_rate * 2)))
    last_sent = room.generator.sent if room.generator else 0
    settled = _wait(
        lambda: all(
            ride_id in stream.tally.answered
            for ride_id in range(first_id, min(last_sent, first_id + held) + 1)
            if ride_id in stream.shard_of
        ),
        timeout=60,
    )
    skipped = [
        ride_id
        for ride_id in range(first_id or 1, min(last_sent, first_id + held) + 1)
        if ride_id in stream.shard_of and ride_id not in stream.tally.answered
    ]
    numbers: dict[str, float | int | str] = {
        "drained_before_stop": "yes" if drained is not None else "no",
        "down_s": round(down, 1),
        "rides_held": held,
        "caught_up_s": round(caught_up, 1) if caught_up is not None else "never",
        "skipped": len(skipped),
        "repeated_answers": stream.tally.duplicates,
    }
    ok = drained is not None and caught_up is not None and settled is not None and not skipped
    text = (
        f"The emulator was down for {down:.1f} s. The rides kept coming: {held} waited at the "
        f"producer and went in once the fresh emulator was up. {stream.AFTER_RESTART}: "
        f"{len(skipped)} rides were skipped, and the lane caught up "
        f"{numbers['caught_up_s']} s after the restart."
    )
    return Outcome(ok, text, numbers)


def new_model(room: Room) -> Outcome:
    """Train another model version and roll it out to all three modes."""
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.demo import ensure_month
    from deploy_modes.core.settings import CoreSettings
    from deploy_modes.core.training import train_model

    assert room.batch is not None
    core = CoreSettings()
    regressor = ("linear", "ridge", "random_forest")[len(room.models) % 3]
    location = room.workdir / "models" / f"model-{len(room.models) + 1}"
    room.phase(f"training a {regressor} model on the demo months")
    months = [
        ensure_month(core.data_dir, month, core.demo_rows, core.seed, room.say)
        for month in (core.train_month, core.val_month)
    ]
    train_model(*months, location, regressor=regressor)
    version = load_model(str(location), room.trust).version
    old = room.version
    room.models[version] = str(location)
    room.version = version
    # Web: gunicorn loads and proves the model in its master, forks new workers, retires old ones.
    room.phase(f"web: deploy web reload --model {location.name} (version {version})")
    failed_before = room.web.failed_requests
    started = time.monotonic()
    reloaded, message = room.web.reload(str(location))
    web_s = time.monotonic() - started
    web_first = _wait(lambda: room.web.tally.version == version, timeout=30)
    web_failed = room.web.failed_requests - failed_before
    # Stream: new consumers with the new model join; the old ones leave gracefully.
    room.phase("stream: consumers with the new model join, the old ones hand their leases over")
    old_consumers = room.stream.live_consumers()
    room.stream.model = str(location)
    for _ in old_consumers:
        room.stream.add_consumer(str(location))
    for process in old_consumers:
        room.stream.retire_consumer(process)
    stream_first = _wait(lambda: room.stream.tally.version == version)
    # Batch: the next run uses it.
    room.phase("batch: the next run uses the new model")
    room.batch.model = str(location)
    room.batch.next_run = room.clock()
    batch_first = _wait(lambda: room.batch.tally.version == version)
    numbers: dict[str, float | int | str] = {
        "old_version": old,
        "new_version": version,
        "regressor": regressor,
        "web_reload_s": round(web_s, 1),
        "web_failed_requests": web_failed,
        "web_last_error": room.web.tally.last_error if web_failed else "none",
        "stream_switched": "yes" if stream_first is not None else "no",
        "batch_switched": "yes" if batch_first is not None else "no",
    }
    ok = reloaded and web_failed == 0 and None not in (web_first, stream_first, batch_first)
    text = (
        f"A {regressor} model (version {version}) replaced version {old}. The web service "
        f"{room.web.RELOAD} in {web_s:.1f} s with {web_failed} failed requests"
        + ("" if reloaded else f" (the reload said: {message})")
        + ". The stream started new consumers with the new model and stopped the old ones, which "
        "checkpointed and released their leases: the lane's answers now name the new version. "
        "The batch job used it from its next run. Every answer is still checked against the "
        "version that gave it."
    )
    return Outcome(ok, text, numbers)


def scale(room: Room) -> Outcome:
    """Add a web worker, a stream consumer and Dask workers for the batch; watch the work spread."""
    assert room.batch is not None
    workers_before = len(room.web.worker_pids())
    room.phase(f"web: {room.web.ADD_WORKER}")
    room.web.add_worker()
    added = _wait(lambda: len(room.web.worker_pids()) > workers_before, timeout=60)
    room.phase("stream: one more consumer joins the group and takes its fair share of the shards")
    before = room.stream.lease_owners()
    newcomer = room.stream.add_consumer()
    number = getattr(newcomer, "number", 0)
    # _CATCH_UP, not a minute: a consumer container (compose run, imports, the model) on a busy
    # machine takes most of a minute before it asks for a lease at all.
    took = _wait(lambda: number in room.stream.lease_owners().values())
    after = room.stream.lease_owners()
    room.phase(f"batch: the next run uses {room.batch.DASK}")
    room.batch.engine = ["--engine", "dask", "--workers", "2"]
    room.batch.engine_text = room.batch.DASK
    runs = len(room.batch.runs)
    room.batch.next_run = room.clock()
    ran = _wait(lambda: len(room.batch.runs) > runs and room.batch.runs[-1].code == 0, timeout=180)
    last = room.batch.runs[-1] if room.batch.runs else None

    def spread(owners: dict[str, int]) -> str:
        counts: dict[int, int] = {}
        for owner in owners.values():
            counts[owner] = counts.get(owner, 0) + 1
        return ", ".join(f"consumer {k}: {v}" for k, v in sorted(counts.items())) or "none"

    numbers: dict[str, float | int | str] = {
        "web_workers_before": workers_before,
        "web_workers_after": len(room.web.worker_pids()),
        "shards_before": spread(before),
        "shards_after": spread(after),
        "batch_engine": room.batch.engine_text,
        "batch_run_s": round(last.seconds, 1) if last else "none",
    }
    ok = added is not None and took is not None and ran is not None
    text = (
        f"Web: gunicorn went from {workers_before} to {numbers['web_workers_after']} workers; "
        f"{room.web.SPREAD}. Stream: consumer {number} joined the group; "
        f"shards per consumer went from ({spread(before)}) to ({spread(after)}): a shard is "
        "read by one consumer at a time, so more consumers than shards would sit idle. Batch: "
        f"the next run went to {room.batch.engine_text} and took {numbers['batch_run_s']} s."
    )
    return Outcome(ok, text, numbers)


SCENARIOS: dict[str, Callable[[Room], Outcome]] = {
    "spike": spike,
    "kill": kill,
    "emulator-restart": emulator_restart,
    "new-model": new_model,
    "scale": scale,
}
