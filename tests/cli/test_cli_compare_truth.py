"""``deploy compare``'s truth check: every mode against the model's own predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.compare.agreement import agreement
from deploy_modes.compare.markdown import truth_sentence
from deploy_modes.compare.report import Report, rich_table, to_json, write_report
from deploy_modes.compare.result import ModeResult
from deploy_modes.compare.rides import RideSet, prepare_rides
from deploy_modes.compare.truth import reference_predictions, truth
from deploy_modes.core.artifact import Trust
from deploy_modes.core.scoring import ModelService

runner = CliRunner()


def _result(mode: str, predictions: dict[str, float]) -> ModeResult:
    return ModeResult(
        mode=mode,
        rides=len(predictions),
        startup_s=1.0,
        wall_s=1.0,
        latencies_s=np.full(max(len(predictions), 1), 0.01),
        peak_rss_bytes=1,
        predictions=predictions,
        details={"concurrency": 1, "workers": 1, "shards": 1},
    )


def _served(rides: RideSet, service: ModelService, offset: float = 0.0) -> dict[str, float]:
    durations = service.predict_arrays(rides.pu, rides.do, rides.distance) + offset
    return dict(zip(rides.ride_ids, durations.tolist(), strict=True))


@pytest.fixture(scope="module")
def rides(tmp_path_factory: pytest.TempPathFactory) -> RideSet:
    return prepare_rides(60, 5, tmp_path_factory.mktemp("rides"))


@pytest.fixture(scope="module")
def reference(model_dir: Path, rides: RideSet, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Return the real reference scorer's answers (a separate process) for the rides."""
    return reference_predictions(str(model_dir), rides, tmp_path_factory.mktemp("ref"), Trust())


def test_the_service_matches_the_reference(
    rides: RideSet, reference: dict, model_service: ModelService
) -> None:
    assert set(reference) == set(rides.ride_ids)
    served = _served(rides, model_service)
    checked = truth([_result("batch", served), _result("web", dict(served))], reference)
    assert checked.ok
    assert checked.max_abs_diff <= 1e-9
    assert checked.by_mode["web"].rides == len(rides)


def test_a_mode_off_by_1e6_fails_the_run(
    rides: RideSet, reference: dict, model_service: ModelService, tmp_path: Path
) -> None:
    served = _served(rides, model_service)
    # All three modes agree with each other, and all are wrong: only the reference sees it.
    off = _served(rides, model_service, offset=1e-6)
    results = [_result("batch", off), _result("web", dict(off)), _result("stream", dict(off))]
    agreed = agreement(rides, results)
    assert agreed.ok
    checked = truth(results, reference)
    assert not checked.ok
    assert set(checked.wrong()) == {"batch", "web", "stream"}
    assert checked.by_mode["web"].over_tolerance == len(rides)
    assert checked.max_abs_diff == pytest.approx(1e-6, rel=1e-3)
    model = {"name": "m", "version": "v"}
    report = Report(rides, results, agreed, "local", model, 1, truth=checked)
    assert not report.ok  # deploy compare exits 1 on this
    data = to_json(report)["reference"]
    assert data["ok"] is False and data["modes"]["batch"]["over_tolerance"] == len(rides)
    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["reference"]["ok"] is False
    markdown = paths["md"].read_text()
    assert "**Wrong predictions**" in markdown and "web on 60 rides" in markdown
    assert "| 1.0e-06 |" in markdown  # the vs ref column
    # One wrong mode among right ones is named alone.
    mixed = truth([_result("batch", served), _result("web", off)], reference)
    assert set(mixed.wrong()) == {"web"}
    good = Report(rides, results[:1], agreed, "local", model, 1, truth=truth([], reference))
    assert good.ok and "Every mode gave the model's own" in truth_sentence(good)
    assert rich_table(report).columns[-1].header == "vs ref"


def test_a_missing_or_nan_prediction_is_not_a_pass(rides: RideSet, reference: dict) -> None:
    first = rides.ride_ids[0]
    checked = truth([_result("web", {first: float("nan")})], reference)
    assert not checked.ok and checked.by_mode["web"].over_tolerance == 1
    stranger = truth([_result("web", {"not-a-ride": 1.0})], reference)
    assert not stranger.ok


@pytest.mark.integration
def test_compare_checks_a_trusted_pickle_against_its_own_predict(
    bare_pickle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOY_TRUST_PICKLE", "0")  # only the option grants it
    out = tmp_path / "report"
    args = ["compare", "--rides", "40", "--runtime", "local", "--out", str(out)]
    args += ["--model", str(bare_pickle), "--trust-pickle", "--concurrency", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "reference: every mode gave the model's own predict" in " ".join(result.output.split())
    report = json.loads((out / "compare.json").read_text())
    assert report["reference"]["ok"] is True
    assert report["reference"]["max_abs_diff"] <= 1e-9
    for mode in ("batch", "web", "stream"):
        assert report["modes"][mode]["predictions"] == 40, mode
        assert report["reference"]["modes"][mode]["rides"] == 40, mode
        assert report["reference"]["modes"][mode]["over_tolerance"] == 0, mode
    assert "vs ref" in (out / "compare.md").read_text()
