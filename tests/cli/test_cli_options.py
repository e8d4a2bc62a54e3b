"""Shared options: one definition each, and one way to build settings (env + explicit options)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy_modes.batch.settings import BatchSettings
from deploy_modes.cli.main import app
from deploy_modes.core.errors import DeployError
from deploy_modes.core.settings import CoreSettings, load_settings
from deploy_modes.stream.settings import StreamSettings

runner = CliRunner()


def _one_line_error(args: list[str], env: dict[str, str], needle: str) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_load_settings_passes_only_given_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_SEED", "7")
    assert load_settings(CoreSettings, seed=None).seed == 7  # None: not given, the env wins
    assert load_settings(CoreSettings, seed=9).seed == 9  # given: it beats the env


def test_load_settings_names_the_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_SEED", "many")
    with pytest.raises(DeployError, match="invalid setting: DEPLOY_SEED='many'"):
        load_settings(CoreSettings)


def test_a_model_named_in_the_environment_counts_as_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEPLOY_MODEL_LOCATION", raising=False)
    assert not load_settings(CoreSettings).model_named
    assert load_settings(CoreSettings, model_location="m").model_named
    monkeypatch.setenv("DEPLOY_MODEL_LOCATION", "elsewhere")
    assert load_settings(CoreSettings).model_named


def test_batch_interval_variables_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_BATCH_FROM", "2021-01")
    monkeypatch.setenv("DEPLOY_BATCH_TO", "2021-02")
    monkeypatch.setenv("DEPLOY_BATCH_MONTH", "2021-03")
    settings = load_settings(BatchSettings, last="2021-05")
    assert (settings.first, settings.last, settings.month) == ("2021-01", "2021-05", "2021-03")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KINESIS_ENDPOINT_URL": "http://k:1"}, "http://k:1"),
        ({"AWS_ENDPOINT_URL": "http://a:1"}, "http://a:1"),
        (
            {"DEPLOY_STREAM_ENDPOINT_URL": "http://d:1", "AWS_ENDPOINT_URL": "http://a:1"},
            "http://d:1",
        ),
    ],
)
def test_the_stream_endpoint_has_three_names_in_order(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DEPLOY_STREAM_ENDPOINT_URL", "KINESIS_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings(StreamSettings).endpoint_url == expected
    assert load_settings(StreamSettings, endpoint_url="http://x:1").endpoint_url == "http://x:1"


def test_a_batch_month_from_the_environment_is_read(tmp_path: Path) -> None:
    _one_line_error(
        ["batch", "--runtime", "local"],
        {"DEPLOY_BATCH_MONTH": "2021-13"},
        "month must look like YYYY-MM",
    )


def test_an_explicit_option_beats_the_environment(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["batch", "--runtime", "local", "--month", "March"],
        env={"DEPLOY_BATCH_MONTH": "2021-03"},
    )
    assert result.exit_code == 1
    assert "March" in result.output


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["compare"], {"DEPLOY_COMPARE_RIDES": "0"}, "invalid setting: DEPLOY_COMPARE_RIDES='0'"),
        (["web"], {"DEPLOY_WEB_PORT": "http"}, "invalid setting: DEPLOY_WEB_PORT='http'"),
        (["stream", "init"], {"DEPLOY_STREAM_SHARDS": "0"}, "DEPLOY_STREAM_SHARDS='0'"),
    ],
)
def test_bad_variables_are_read_once_by_the_settings(
    args: list[str], env: dict[str, str], needle: str, tmp_path: Path
) -> None:
    _one_line_error(args, env, needle)
