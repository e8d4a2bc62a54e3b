"""``http(s)://`` months beyond ``deploy batch``: ``train --data-dir URL``, ``compare --input URL``.

Served by the real loopback HTTP server of ``tests/conftest.py`` (``tlc_site``), laid out as the
TLC site: a missing month there is one ``error:`` line, never generated, and a body cut short
is refused, not read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.compare.rides import prepare_rides
from deploy_modes.core.data import month_file

runner = CliRunner()
MARCH = month_file(2021, 3)


def _one_error(result: Any, *parts: str) -> None:
    """Assert a refusal: exit 1, one ``error:`` line holding ``parts``, no traceback."""
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for part in parts:
        assert part in errors[0], result.output
    assert "Traceback" not in result.output


def _train(data_dir: str, out: Path, *args: str) -> Any:
    return runner.invoke(app, ["train", "--data-dir", data_dir, "--out", str(out), *args])


@pytest.mark.parametrize("slash", ["/", ""])
def test_train_reads_its_months_from_a_url_base_like_the_same_folder(
    tlc_site: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    slash: str,
) -> None:
    base, root = tlc_site
    monkeypatch.chdir(tmp_path)
    by_url = _train(base + slash, tmp_path / "url")
    assert by_url.exit_code == 0, by_url.output
    assert "generating" not in by_url.output
    by_path = _train(str(root), tmp_path / "path")
    assert by_path.exit_code == 0, by_path.output
    url = json.loads((tmp_path / "url" / "manifest.json").read_text())
    path = json.loads((tmp_path / "path" / "manifest.json").read_text())
    assert url["training"]["train"]["path"] == f"{base}/{month_file(2021, 1)}"
    assert url["training"]["validation"]["file"] == month_file(2021, 2)
    assert url["metrics"] == path["metrics"]  # the same bytes, fitted the same way
    assert not (tmp_path / "data").exists()  # nothing generated, not even a default folder


def test_train_a_month_missing_at_the_url_is_one_error_and_never_generated(
    tlc_site: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = tlc_site
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in root.iterdir())
    # The validation month is missing: found by a HEAD before the training month is read.
    result = _train(base, tmp_path / "model", "--val-month", "2021-04", "--rows", "100")
    _one_error(result, "no data for 2021-04", f"{base}/{month_file(2021, 4)}", "never generated")
    assert "reading" not in result.output  # refused before any download
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == before


def test_train_a_month_cut_short_is_one_error(
    tlc_cut: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _train(tlc_cut, tmp_path / "model")
    _one_error(result, "cannot download", month_file(2021, 1), "bytes (cut off)")
    assert not (tmp_path / "model").exists()


def test_data_never_generates_into_a_url(
    tlc_site: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "--month", "2021-05", "--data-dir", tlc_site[0]])
    _one_error(result, "cannot write trips to", f"{tlc_site[0]}/{month_file(2021, 5)}")
    assert not (tlc_site[1] / month_file(2021, 5)).exists()
    assert list(tmp_path.iterdir()) == []


def test_compare_takes_the_same_rides_from_a_url_as_from_the_file(
    tlc_site: tuple[str, Path], tmp_path: Path
) -> None:
    base, root = tlc_site
    by_url = prepare_rides(50, 0, tmp_path / "url", f"{base}/{MARCH}")
    by_path = prepare_rides(50, 0, tmp_path / "path", str(root / MARCH))
    assert len(by_url) == len(by_path) == 50
    assert by_url.source == f"{base}/{MARCH}"
    for column in ("pu", "do", "distance"):
        np.testing.assert_array_equal(getattr(by_url, column), getattr(by_path, column))


@pytest.mark.integration
def test_compare_runs_the_three_modes_on_a_url_month(
    tlc_site: tuple[str, Path], model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"{tlc_site[0]}/{MARCH}"
    result = runner.invoke(
        app,
        [
            *("compare", "--rides", "40", "--runtime", "local", "--input", url),
            *("--model", str(model_dir), "--out", str(tmp_path / "report")),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert report["rides"]["count"] == 40
    assert report["agreement"]["ok"] is True and report["reference"]["ok"] is True


@pytest.mark.parametrize(
    ("where", "expected"),
    [("missing", "HTTP 404"), ("cut", "bytes (cut off)")],
)
def test_compare_a_bad_url_input_is_one_error_before_any_mode_starts(
    tlc_site: tuple[str, Path],
    tlc_cut: str,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"{tlc_site[0]}/{month_file(1999, 3)}" if where == "missing" else f"{tlc_cut}/{MARCH}"
    result = runner.invoke(
        app,
        [
            *("compare", "--runtime", "local", "--input", url),
            *("--model", str(model_dir), "--out", str(tmp_path / "report")),
        ],
    )
    _one_error(result, "cannot download", url, expected)
    assert "starting" not in result.output  # no mode was brought up
    assert not (tmp_path / "report" / "compare.json").exists()
