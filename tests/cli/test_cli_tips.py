"""``deploy train --target tip_amount`` and the modes that answer durations refusing a tip model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from deploy_modes.cli.main import app
from deploy_modes.core.artifact import MANIFEST_FILE
from deploy_modes.core.data import month_file
from deploy_modes.launch.processes import free_port

runner = CliRunner()


def deploy(*args: str) -> Result:
    """Run ``deploy args...`` in-process and return the result."""
    return runner.invoke(app, list(args))


def one_error(result: Result) -> str:
    """Return the one ``error:`` line of a failed command with no traceback."""
    assert result.exit_code != 0 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_train_target_tip_amount_writes_the_tip_model_to_its_own_place(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    months = shutil.copytree(data_dir, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    result = deploy("train", "--target", "tip_amount", "--data-dir", str(months))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "models/tip-amount" / MANIFEST_FILE).read_text())
    assert manifest["name"] == "tip_amount_prediction_model"
    assert manifest["features"]["target"] == "tip_amount"
    rmse = manifest["metrics"]["val_rmse"]
    assert f"validation RMSE {rmse:.3f} dollars" in result.stdout
    assert not (tmp_path / "models/ride-duration").exists()  # the duration model is untouched


def test_an_unknown_target_is_one_line_before_any_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    error = one_error(deploy("train", "--target", "tips", "--data-dir", str(tmp_path / "d")))
    assert "--target must be one of duration, tip_amount, got 'tips'" in error
    assert not (tmp_path / "d" / month_file(2021, 1)).exists()


def test_web_refuses_a_tip_model_in_one_line(tip_model_dir: Path) -> None:
    result = deploy(
        "web", "--runtime", "local", "--port", str(free_port()), "--model", str(tip_model_dir)
    )
    assert "predicts tip_amount, but this mode answers duration only" in one_error(result)


def test_batch_refuses_a_tip_model_in_one_line(
    tip_model_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    result = deploy(
        "batch",
        "--runtime",
        "local",
        "--input",
        str(data_dir / month_file(2021, 2)),
        "--output",
        str(tmp_path / "out.parquet"),
        "--model",
        str(tip_model_dir),
    )
    assert "predicts tip_amount, but this mode answers duration only" in one_error(result)
    assert not (tmp_path / "out.parquet").exists()
