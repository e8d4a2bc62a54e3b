"""User text is never rich markup: brackets print verbatim in one ``error:`` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.launch.processes import free_port

runner = CliRunner()


def _deploy(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in ``cwd`` (its stderr is what a user sees)."""
    env = {
        **os.environ,
        # No S3 request may leave the machine: a dead loopback endpoint.
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    code = "from deploy_modes.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["in[/x].parquet", "rides[old].parquet", "[bold]x.parquet"])
def test_a_bracketed_input_is_named_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["batch", "--runtime", "local", "--month", "2021-03", "--input", name]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: input file does not exist: {name}"
    assert not (tmp_path / "models").exists()  # checked before any demo model is trained


def test_the_console_script_prints_brackets_on_stderr(tmp_path: Path) -> None:
    """The real entry point: one line on stderr, as a user's terminal shows it."""
    done = _deploy(tmp_path, "batch", "--runtime", "local", "--input", "in[/x].parquet")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: input file does not exist: in[/x].parquet"


def test_model_show_names_a_bracketed_location_verbatim(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "show", str(tmp_path / "no[/such]")])
    assert result.exit_code == 1
    assert f"no model at {tmp_path / 'no[/such]'}" in result.output
    assert "Traceback" not in result.output


def test_an_invalid_bucket_is_one_line_with_botocores_brackets(
    tmp_path: Path, model_dir: Path
) -> None:
    """botocore's "Invalid bucket name" message quotes a regex with ``[/:]``."""
    done = _deploy(
        tmp_path,
        *("batch", "--runtime", "local", "--month", "2021-03", "--model", str(model_dir)),
        *("--input", "s3://bad_bucket!/rides.parquet"),
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "bad_bucket!" in lines[0]
    assert "[/:]" in lines[0]


def test_a_stray_bracket_in_an_s3_uri_is_one_line() -> None:
    args = ["batch", "--runtime", "local", "--month", "2021-03", "--input", "s3://b[/x.parquet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output.startswith("error: not an S3 URI")
    assert "Traceback" not in result.output


def test_say_prints_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from deploy_modes.launch.terminal import say

    say("reading rides[old].parquet and [/x]")
    assert "rides[old].parquet and [/x]" in capsys.readouterr().out


def test_fail_prints_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from deploy_modes.cli.console import fail

    fail("bad [/:] thing")
    assert "error: bad [/:] thing" in capsys.readouterr().err
