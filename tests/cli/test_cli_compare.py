"""``deploy compare``: a real small run of all three modes, its report, teardown, bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.compare.agreement import Agreement, agreement
from deploy_modes.compare.markdown import choose_paragraph
from deploy_modes.compare.memory import PeakMemory
from deploy_modes.compare.report import Report, ratios_line, to_json, write_report
from deploy_modes.compare.result import ModeResult
from deploy_modes.compare.rides import MAX_RIDES, prepare_rides
from deploy_modes.core.data import generate_month, read_trips, write_month
from deploy_modes.core.errors import DeployError
from deploy_modes.core.features import MAX_DURATION_MIN, MIN_DURATION_MIN
from deploy_modes.core.validation import invalid_reasons

DEPLOY = str(Path(sys.executable).parent / "deploy")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the real thing ---------------------------------------------------------------------


@pytest.mark.integration
def test_compare_runs_all_three_modes_and_reports(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _descendants()
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            *("compare", "--rides", "300", "--runtime", "local", "--out", str(out)),
            *("--model", str(model_dir), "--concurrency", "4"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "agreement" in result.output

    report = json.loads((out / "compare.json").read_text())
    assert report["rides"]["count"] == 300
    assert report["runtime"] == "local"
    assert report["model"]["version"]
    assert report["machine"]["cpus"] >= 1 and report["machine"]["versions"]["numpy"]
    assert set(report["modes"]) == {"batch", "web", "stream"}
    for mode, figures in report["modes"].items():
        assert figures["predictions"] == 300, mode
        for key in ("startup_s", "wall_s", "throughput_rides_per_s", "peak_rss_mb"):
            assert figures[key] > 0, (mode, key)
        latency = figures["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], (mode, latency)
        assert figures["errors"] == [], mode
    # Batch latency is the job's wall time for every ride.
    batch = report["modes"]["batch"]
    assert batch["latency_ms"]["p50"] == pytest.approx(batch["wall_s"] * 1000, rel=1e-3)
    assert report["modes"]["web"]["details"]["concurrency"] == 4
    assert report["agreement"]["ok"] is True
    assert report["agreement"]["max_abs_diff"] <= 1e-9
    assert report["agreement"]["mismatches"] == []
    # Truth, not only agreement: every mode against the model's own predict.
    assert report["reference"]["ok"] is True
    assert report["reference"]["max_abs_diff"] <= 1e-9
    assert set(report["reference"]["modes"]) == {"batch", "web", "stream"}

    png = (out / "compare.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    from PIL import Image

    with Image.open(out / "compare.png") as image:
        image.verify()
        assert image.size[0] > 600 and image.size[1] > 300

    markdown = (out / "compare.md").read_text()
    assert "## When to choose which" in markdown
    web_rate = report["modes"]["web"]["throughput_rides_per_s"]
    # The advice quotes the measured rate; compare.json keeps it to 0.1, so it may round either way.
    quoted = {f"{whole:,} rides/s" for whole in (math.floor(web_rate), math.ceil(web_rate))}
    assert any(text in markdown for text in quoted), (quoted, markdown)
    assert "| batch |" in markdown and "| stream |" in markdown
    assert not list(out.glob("*.tmp*"))

    # Nothing left running: no gunicorn, no consumer, no moto server, no batch job.
    leftover = {pid for pid in _descendants() - before if _alive(pid)}
    assert not leftover, [psutil.Process(p).cmdline() for p in leftover]


@pytest.mark.integration
def test_a_fresh_checkout_trains_the_demo_model_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's first command on a machine with no model and no Docker engine.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOY_DEMO_ROWS", "3000")  # a small demo model: the test stays short
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("DEPLOY_RUNTIME", raising=False)  # the default, auto
    result = subprocess.run(
        [DEPLOY, "compare", "--rides", "40"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training a demo model" in result.stdout
    assert "runtime: local" in result.stdout  # auto resolved to local without an engine
    report = json.loads((tmp_path / "compare-out" / "compare.json").read_text())
    assert report["agreement"]["ok"] and report["rides"]["count"] == 40
    assert (tmp_path / "models" / "ride-duration").is_dir()


def _cmdlines(pid: int) -> list[str]:
    lines = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            lines.append(" ".join(child.cmdline()))
        except psutil.Error:
            continue
    return lines


def _serving_web(lines: list[str]) -> bool:
    return sum("gunicorn" in line for line in lines) >= 2  # the master and a worker


def _consuming(lines: list[str]) -> bool:
    return any("moto" in line for line in lines) and any(" consume " in line for line in lines)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("rides", "phase", "sig"),
    [("50000", _serving_web, signal.SIGINT), ("1500", _consuming, signal.SIGTERM)],
    ids=["ctrl-c-while-web-serves", "sigterm-while-stream-consumes"],
)
def test_an_interrupt_tears_everything_down(
    rides: str, phase: Callable[[list[str]], bool], sig: int, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    log = (tmp_path / "deploy.log").open("wb")
    process = subprocess.Popen(
        [
            *(DEPLOY, "compare", "--rides", rides, "--runtime", "local"),
            *("--out", str(out), "--model", str(model_dir)),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while not phase(_cmdlines(process.pid)):
            assert process.poll() is None, (tmp_path / "deploy.log").read_text()
            assert time.monotonic() < deadline, "the phase to interrupt never started"
            time.sleep(0.05)
        started = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
        process.send_signal(sig)
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "deploy.log").read_text()
    assert code == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert not [pid for pid in started if _alive(pid)]
    assert not (out / "compare.json").exists()  # no half-written report


# --- bad input: one clear line, exit non-zero, no process started ------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--rides", "0"],
        ["--rides", "-5"],
        ["--rides", "many"],
        ["--rides", str(MAX_RIDES + 1)],
        ["--rides", "1e3"],
        ["--concurrency", "0"],
        ["--shards", "0"],
        ["--workers", "1000"],
        ["--seed", "-1"],
    ],
)
def test_bad_numbers_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "compare.json").exists()


def _error(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(cwd)
    before = _descendants()
    result = runner.invoke(app, ["compare", "--runtime", "local", *args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not {pid for pid in _descendants() - before if _alive(pid)}
    return result.output


@pytest.mark.parametrize("command", [["compare"], ["web"], ["batch"], ["stream"]])
def test_unknown_runtime_is_a_usage_error_listing_the_choices(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--runtime", "kubernetes"])
    assert result.exit_code == 2
    assert "'kubernetes' is not one of" in result.output
    assert "auto" in result.output and "local" in result.output and "compose" in result.output
    assert "Traceback" not in result.output


def test_a_bad_runtime_in_the_environment_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare"], env={"DEPLOY_RUNTIME": "kubernetes"})
    assert result.exit_code == 1
    assert "invalid setting: DEPLOY_RUNTIME='kubernetes'" in result.output
    assert "Traceback" not in result.output


def test_compose_runtime_without_an_engine_is_one_line(tmp_path: Path) -> None:
    # The real command with DOCKER_HOST at a socket that does not exist: no engine answers.
    result = subprocess.run(
        [DEPLOY, "compare", "--runtime", "compose", "--rides", "10"],
        cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--runtime compose needs Docker" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "compare-out" / "compare.json").exists()
    assert not (tmp_path / "models").exists()  # nothing trained before the runtime check


def test_out_that_is_a_file(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "taken").write_text("not a directory")
    output = _error(["--out", "taken", "--model", str(model_dir)], tmp_path, monkeypatch)
    assert "is a file" in output
    output = _error(["--out", "taken/inside", "--model", str(model_dir)], tmp_path, monkeypatch)
    assert "taken is a file, not a directory" in output


def test_missing_input(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--input", "nope.parquet", "--model", str(model_dir)]
    assert "does not exist" in _error(args, tmp_path, monkeypatch)


def test_empty_input(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--input" in _error(["--input", "", "--model", str(model_dir)], tmp_path, monkeypatch)


def test_input_that_is_not_parquet(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rides.parquet").write_text("PULocationID,DOLocationID\n1,2\n")
    args = ["--input", "rides.parquet", "--model", str(model_dir)]
    assert "not a readable parquet file" in _error(args, tmp_path, monkeypatch)


def test_input_without_a_usable_ride(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = generate_month(2021, 3, rows=50, seed=1)
    frame["PULocationID"] = 999  # every zone out of range
    write_month(frame, tmp_path / "bad.parquet")
    args = ["--input", "bad.parquet", "--model", str(model_dir)]
    assert "no ride every mode can score" in _error(args, tmp_path, monkeypatch)


def test_input_with_wrong_columns(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "odd.parquet")
    args = ["--input", "odd.parquet", "--model", str(model_dir)]
    assert "lacks required columns" in _error(args, tmp_path, monkeypatch)


def test_input_that_is_a_directory(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "months").mkdir()
    args = ["--input", "months", "--model", str(model_dir)]
    assert "is a directory" in _error(args, tmp_path, monkeypatch)


def test_input_with_wrong_typed_columns(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "lpep_pickup_datetime": ["yesterday"],
            "lpep_dropoff_datetime": ["today"],
            "PULocationID": ["ten"],
            "DOLocationID": [50],
            "trip_distance": [1.0],
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    args = ["--input", "typed.parquet", "--model", str(model_dir)]
    assert "wrong type" in _error(args, tmp_path, monkeypatch)


def test_model_that_is_not_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04 certainly not a pickle")
    output = _error(["--model", "model.pkl"], tmp_path, monkeypatch)
    assert "model.pkl" in output
    assert not (tmp_path / "compare-out" / "compare.json").exists()


def test_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = _error(["--model", str(tmp_path / "no-model")], tmp_path, monkeypatch)
    assert "no-model" in output
    assert not (tmp_path / "compare").exists()  # no empty report directory either


# --- pure parts --------------------------------------------------------------------------


def test_generated_rides_all_pass_the_batch_filter(tmp_path: Path) -> None:
    rides = prepare_rides(500, 42, tmp_path)
    assert len(rides) == 500 and len(set(rides.ride_ids)) == 500
    assert rides.ride_ids[0] == "2021/03_0" and rides.ride_ids[-1] == "2021/03_499"
    frame = read_trips(rides.path)
    assert len(frame) == 500
    masks = invalid_reasons(rides.pu, rides.do, rides.distance)
    assert not any(mask.any() for mask in masks.values())
    minutes = (
        frame["lpep_dropoff_datetime"] - frame["lpep_pickup_datetime"]
    ).dt.total_seconds() / 60
    assert minutes.between(MIN_DURATION_MIN, MAX_DURATION_MIN).all()
    assert rides.payload(3)["ride_id"] == "2021/03_3"
    assert rides.event(3)["ride_id"] == "2021/03_3" and "ride_id" not in rides.event(3)["ride"]
    # Same seed, same rides.
    again = prepare_rides(500, 42, tmp_path / "again")
    assert np.array_equal(again.distance, rides.distance)


def test_input_rides_skip_unusable_rows_and_say_how_many(tmp_path: Path) -> None:
    frame = generate_month(2021, 3, rows=400, seed=3)
    frame.loc[:9, "PULocationID"] = 0
    write_month(frame, tmp_path / "month.parquet")
    rides = prepare_rides(10_000, 0, tmp_path / "work", str(tmp_path / "month.parquet"))
    assert 0 < len(rides) <= 390
    assert rides.dropped == 400 - len(rides) >= 10


@pytest.mark.parametrize("count", [0, -1, MAX_RIDES + 1])
def test_prepare_rides_refuses_out_of_range_counts(count: int, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="--rides must be"):
        prepare_rides(count, 1, tmp_path)


def _result(mode: str, predictions: dict[str, float], latency: float = 0.01) -> ModeResult:
    return ModeResult(
        mode=mode,
        rides=3,
        startup_s=1.5,
        wall_s=0.5,
        latencies_s=np.full(3, latency),
        peak_rss_bytes=100 * 1024 * 1024,
        predictions=predictions,
        details={"concurrency": 2, "workers": 3, "shards": 2},
    )


def test_agreement_lists_differences_and_missing_rides(tmp_path: Path) -> None:
    rides = prepare_rides(3, 1, tmp_path)
    a, b, c = rides.ride_ids
    same = {a: 10.0, b: 11.0, c: 12.0}
    ok = agreement(rides, [_result("batch", same), _result("web", dict(same))])
    assert ok.ok and ok.max_diff == 0.0
    tiny = agreement(rides, [_result("batch", same), _result("web", {**same, a: 10.0 + 1e-12})])
    assert tiny.ok and 0 < tiny.max_diff < 1e-9
    bad = agreement(
        rides,
        [_result("batch", same), _result("web", {a: 10.5, b: 11.0}), _result("stream", same)],
    )
    assert not bad.ok
    reasons = {m["ride_id"]: m["reason"] for m in bad.mismatches}
    assert reasons[a] == "differ by 0.5"
    assert reasons[c] == "missing in web"
    assert b not in reasons
    assert bad.max_diff == 0.5


def test_agreement_caps_the_list(tmp_path: Path) -> None:
    rides = prepare_rides(120, 1, tmp_path)
    web = {r: 1.0 for r in rides.ride_ids}
    result = agreement(rides, [_result("batch", {}), _result("web", web)], limit=10)
    assert result.mismatch_count == 120  # every ride, not the length of the capped list
    assert len(result.mismatches) == 10
    assert all(m["ride_id"] in rides.ride_ids for m in result.mismatches)  # no summary row
    assert not result.ok


def test_report_files_from_figures(tmp_path: Path) -> None:
    rides = prepare_rides(3, 1, tmp_path)
    preds = dict(zip(rides.ride_ids, [1.0, 2.0, 3.0], strict=True))
    results = [
        _result("batch", preds, 0.5),
        _result("web", preds, 0.004),
        _result("stream", {}),
    ]
    results[2].latencies_s = np.array([])  # a stream that predicted nothing measured nothing
    agreed = agreement(rides, results)
    report = Report(rides, results, agreed, "local", {"name": "m", "version": "v1"}, 42)
    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["modes"]["stream"]["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert data["agreement"]["ok"] is False
    assert len(data["agreement"]["mismatches"]) == 3
    assert data["agreement"]["mismatch_count"] == 3
    markdown = paths["md"].read_text()
    assert "## Mismatches" in markdown and "missing in stream" in markdown
    assert paths["png"].read_bytes().startswith(PNG_MAGIC)
    assert to_json(report)["rides"]["seed"] == 42
    assert data["ratios_vs_web"]["web"] == {"throughput": 1.0, "latency_p50": 1.0}
    assert data["ratios_vs_web"]["batch"]["latency_p50"] == 125.0
    assert data["ratios_vs_web"]["stream"]["latency_p50"] is None
    assert ratios_line(report).startswith("ratio vs web (same run): batch throughput x1.00")
    assert "ratio vs web" in markdown
    text = choose_paragraph(report)
    assert "p50 4.0 ms" in text and "disagreed on 3 rides" in text


def test_peak_memory_sees_children(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'b = bytearray(60 * 1024 * 1024); import time; time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        memory = PeakMemory(parent.pid)
        deadline = time.monotonic() + 60
        while memory.peak < 60 * 1024 * 1024:
            assert time.monotonic() < deadline, memory.peak
            time.sleep(0.1)
        assert memory.processes == 2
    finally:
        peak = memory.stop()
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    assert peak >= 60 * 1024 * 1024


def test_agreement_is_a_plain_value() -> None:
    assert Agreement(compared=0, max_diff=0.0).ok
    assert not Agreement(compared=1, max_diff=1.0, mismatch_count=1, mismatches=[]).ok
