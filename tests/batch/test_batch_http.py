"""``http(s)://`` parquet inputs (the TLC site's months), served by a real local HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import month_file, read_trips
from deploy_modes.core.errors import DataError

runner = CliRunner()
MONTH = month_file(2021, 3)


def _batch(model_dir: Path, source: str, out: Path) -> object:
    return runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--model", str(model_dir)),
            *("--input", source, "--out", str(out)),
        ],
    )


def test_batch_scores_an_http_month_like_the_same_local_file(
    tlc_site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    base, root = tlc_site
    by_url = _batch(model_dir, f"{base}/{MONTH}", tmp_path / "url.parquet")
    assert by_url.exit_code == 0, by_url.output
    by_path = _batch(model_dir, str(root / MONTH), tmp_path / "path.parquet")
    assert by_path.exit_code == 0, by_path.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "url.parquet"), pd.read_parquet(tmp_path / "path.parquet")
    )


def test_a_missing_url_is_one_error_line(
    tlc_site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    missing = f"{tlc_site[0]}/green_tripdata_1999-03.parquet"
    result = _batch(model_dir, missing, tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert "HTTP 404" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_a_cut_transfer_fails_instead_of_reading_a_truncated_file(
    tlc_cut: str, model_dir: Path, tmp_path: Path
) -> None:
    result = _batch(model_dir, f"{tlc_cut}/{MONTH}", tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert "cannot download" in result.output
    assert "bytes (cut off)" in result.output


def test_read_trips_reads_a_url(tlc_site: tuple[str, Path]) -> None:
    """What train, compare --input and stream send --input read with."""
    base, root = tlc_site
    pd.testing.assert_frame_equal(read_trips(f"{base}/{MONTH}"), read_trips(root / MONTH))
    with pytest.raises(DataError, match="HTTP 404"):
        read_trips(f"{base}/nope.parquet")


def test_dask_refuses_an_http_input_before_starting(
    tlc_site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--engine", "dask"),
            *("--input", f"{tlc_site[0]}/{MONTH}", "--out", str(tmp_path / "o.parquet")),
            *("--model", str(model_dir)),
        ],
    )
    assert result.exit_code == 1
    assert "--engine dask reads local, s3:// or database inputs" in result.output


def test_an_http_output_is_refused(tlc_site: tuple[str, Path], model_dir: Path) -> None:
    """URLs are read, never written."""
    result = runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--model", str(model_dir)),
            *("--input", f"{tlc_site[0]}/{MONTH}", "--out", f"{tlc_site[0]}/out.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert "unsupported location" in result.output


def test_an_http_data_dir_is_the_default_input_read_and_never_generated_into(
    tlc_site: tuple[str, Path], model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base, root = tlc_site

    def batch(month: str) -> Any:
        return runner.invoke(
            app,
            [
                *("batch", "--runtime", "local", "--month", month, "--model", str(model_dir)),
                *("--out", str(tmp_path / f"{month}.parquet")),
            ],
            env={"DEPLOY_DATA_DIR": base},
        )

    scored = batch("2021-03")
    assert scored.exit_code == 0, scored.output
    assert "generating" not in scored.output
    by_path = _batch(model_dir, str(root / MONTH), tmp_path / "path.parquet")
    assert by_path.exit_code == 0, by_path.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "2021-03.parquet"), pd.read_parquet(tmp_path / "path.parquet")
    )
    missing = batch("2021-04")
    assert missing.exit_code == 1
    assert f"{base}/{month_file(2021, 4)}: HTTP 404" in missing.output
    assert "generating" not in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "http:").exists()  # a URL folded into a local folder
    assert not (root / month_file(2021, 4)).exists()
