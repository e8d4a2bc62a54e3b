"""Cheap checks first: a bad path, format, URL or option fails before any training or generating.

Each command runs in an empty folder with no model named: had it trained the demo model (or
generated a month) before refusing, ``models/`` or ``data/`` would exist afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app

runner = CliRunner()


@pytest.fixture
def empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("DEPLOY_MODEL_LOCATION", "DEPLOY_DATA_DIR", "DEPLOY_RUNTIME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _refused(folder: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in (1, 2), result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == [], "work happened before the check"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["batch", "--runtime", "local", "--input", "rides.csv"], "is not parquet (.csv)"),
        (["batch", "--runtime", "local", "--input", "rides.db"], "sqlite:///rides.db"),
        (["batch", "--runtime", "local", "--input", "nope.parquet"], "does not exist"),
        (["batch", "--runtime", "local", "--out", "ftp://h/o.parquet"], "unsupported location"),
        (["batch", "--runtime", "local", "--month", "2021-13"], "2021-13"),
        (["stream", "--runtime", "local", "--endpoint-url", "ftp://h"], "--endpoint-url"),
        (["compare", "--runtime", "local", "--input", "nope.parquet"], "nope.parquet"),
        (["data", "--out", "rides.csv"], "cannot write trips to 'rides.csv'"),
        (["train", "--regressor", "nope"], "nope"),
        (["train", "--train-month", "2021-13"], "2021-13"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_refused_before_any_work(empty_folder: Path, args: list[str], needle: str) -> None:
    _refused(empty_folder, args, needle)


def test_web_refuses_a_busy_port_before_training(empty_folder: Path, busy_port: int) -> None:
    _refused(
        empty_folder,
        ["web", "--runtime", "local", "--port", str(busy_port)],
        f"port {busy_port} on 127.0.0.1 is already in use",
    )
