"""The reference check with real models: a right answer passes, a wrong one turns the lane red."""

from __future__ import annotations

from pathlib import Path

from deploy_modes.classroom.checker import Checker
from deploy_modes.classroom.lane import Answer, Tally
from deploy_modes.classroom.rides import Ride
from deploy_modes.core.artifact import LoadedModel, Trust
from deploy_modes.core.reference import Reference

RIDES = [
    Ride(k + 1, k, pu, do, dist, 0.0)
    for k, (pu, do, dist) in enumerate(
        [(130, 205, 3.66), (43, 151, 1.2), (74, 75, 0.9), (1, 265, 12.5)]
    )
]


def _answers(location: str, version: str) -> list[Answer]:
    truth = Reference(location, Trust()).durations(
        [r.pu for r in RIDES], [r.do for r in RIDES], [r.distance for r in RIDES]
    )
    return [Answer(r.ride_id, float(d), version, 1.0) for r, d in zip(RIDES, truth, strict=True)]


def _check(checker: Checker, tally: Tally, answers: list[Answer]) -> None:
    for ride, answer in zip(RIDES, answers, strict=True):
        tally.answer(answer, ride.sent)
        checker.submit(tally, ride, answer)
    checker.check_now()


def _state(tally: Tally) -> tuple[str, str]:
    lane = tally.state(2.0, 0, ("ok", "fine"), (0, 0), "")
    return lane.status, lane.status_text


def test_answers_equal_to_the_model_pass(model_dir: Path, loaded_model: LoadedModel) -> None:
    version = loaded_model.version
    checker = Checker({version: str(model_dir)}, Trust())
    tally = Tally("web", "Web", "waiting")
    _check(checker, tally, _answers(str(model_dir), version))
    assert (tally.checked, tally.mismatches) == (4, 0)
    assert _state(tally) == ("ok", "fine")


def test_one_answer_off_by_a_second_turns_the_lane_red(
    model_dir: Path, loaded_model: LoadedModel
) -> None:
    version = loaded_model.version
    checker = Checker({version: str(model_dir)}, Trust())
    tally = Tally("stream", "Stream", "waiting")
    answers = _answers(str(model_dir), version)
    answers[2] = Answer(3, answers[2].duration + 1 / 60, version, 1.0)
    _check(checker, tally, answers)
    assert (tally.checked, tally.mismatches) == (4, 1)
    status, text = _state(tally)
    assert status == "red"
    assert "1 predictions differ" in text and "ride 3" in text


def test_answers_of_another_model_under_this_version_are_caught(
    model_dir: Path, tip_model_dir: Path, loaded_model: LoadedModel
) -> None:
    # The room believes the version is model_dir's, but the answers came from another model.
    version = loaded_model.version
    checker = Checker({version: str(model_dir)}, Trust())
    tally = Tally("batch", "Batch", "waiting")
    _check(checker, tally, _answers(str(tip_model_dir), version))
    assert tally.mismatches == 4
    assert _state(tally)[0] == "red"


def test_a_version_the_room_never_deployed_is_a_mismatch(model_dir: Path) -> None:
    checker = Checker({}, Trust())
    tally = Tally("web", "Web", "waiting")
    _check(checker, tally, _answers(str(model_dir), "feedfacecafe"))
    assert tally.mismatches == 4
    assert "never deployed" in _state(tally)[1]


def test_a_repeated_answer_is_a_duplicate_and_a_stranger_an_error() -> None:
    tally = Tally("stream", "Stream", "waiting")
    assert tally.answer(Answer(1, 5.0, "v", 1.0), 0.0)
    assert not tally.answer(Answer(1, 5.0, "v", 1.5), 0.0)
    tally.repeat(1)
    tally.repeat(99)
    assert (tally.predictions_out, tally.duplicates, tally.errors) == (1, 2, 1)
    assert "ride 99, which was never sent" in tally.last_error
