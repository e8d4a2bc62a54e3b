"""``http(s)://`` parquet inputs (the TLC site's months), served by a real local HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import generate_month, month_file, read_trips, write_month
from deploy_modes.core.errors import DataError

runner = CliRunner()
MONTH = month_file(2021, 3)


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serve a folder; ``/cut.parquet`` promises more bytes than it sends (a cut transfer)."""

    def do_GET(self) -> None:
        if self.path == "/cut.parquet":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PAR1" + b"\0" * 100)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        return


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Return the base URL of a loopback HTTP server holding March 2021, and its folder."""
    root = tmp_path_factory.mktemp("site")
    write_month(generate_month(2021, 3, rows=500, seed=11), root / MONTH)
    handler = functools.partial(_Files, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


def _batch(model_dir: Path, source: str, out: Path) -> object:
    return runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--model", str(model_dir)),
            *("--input", source, "--out", str(out)),
        ],
    )


def test_batch_scores_an_http_month_like_the_same_local_file(
    site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    base, root = site
    by_url = _batch(model_dir, f"{base}/{MONTH}", tmp_path / "url.parquet")
    assert by_url.exit_code == 0, by_url.output
    by_path = _batch(model_dir, str(root / MONTH), tmp_path / "path.parquet")
    assert by_path.exit_code == 0, by_path.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "url.parquet"), pd.read_parquet(tmp_path / "path.parquet")
    )


def test_a_missing_url_is_one_error_line(
    site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    result = _batch(model_dir, f"{site[0]}/green_tripdata_1999-03.parquet", tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert "HTTP 404" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_a_cut_transfer_fails_instead_of_reading_a_truncated_file(
    site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    result = _batch(model_dir, f"{site[0]}/cut.parquet", tmp_path / "o.parquet")
    assert result.exit_code == 1
    assert "cannot download" in result.output
    assert "bytes (cut off)" in result.output


def test_read_trips_reads_a_url(site: tuple[str, Path]) -> None:
    """What train, compare --input and stream send --input read with."""
    base, root = site
    pd.testing.assert_frame_equal(read_trips(f"{base}/{MONTH}"), read_trips(root / MONTH))
    with pytest.raises(DataError, match="HTTP 404"):
        read_trips(f"{base}/nope.parquet")


def test_dask_refuses_an_http_input_before_starting(
    site: tuple[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--engine", "dask"),
            *("--input", f"{site[0]}/{MONTH}", "--out", str(tmp_path / "o.parquet")),
            *("--model", str(model_dir)),
        ],
    )
    assert result.exit_code == 1
    assert "--engine dask reads local, s3:// or database inputs" in result.output


def test_an_http_output_is_refused(site: tuple[str, Path], model_dir: Path) -> None:
    """URLs are read, never written."""
    result = runner.invoke(
        app,
        [
            *("batch", "--runtime", "local", "--month", "2021-03", "--model", str(model_dir)),
            *("--input", f"{site[0]}/{MONTH}", "--out", f"{site[0]}/out.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert "unsupported location" in result.output
