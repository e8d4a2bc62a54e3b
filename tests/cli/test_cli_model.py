"""``deploy data``, ``deploy train`` and ``deploy model show`` through typer's test runner."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from deploy_modes.cli.main import app
from deploy_modes.core.artifact import MANIFEST_FILE, MODEL_FILE, load_model
from deploy_modes.core.data import TLC_SCHEMA, month_file

runner = CliRunner()


def deploy(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``deploy args...`` in-process and return the result."""
    return runner.invoke(app, list(args), env=env)


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Assert a one-line ``error:`` message, a non-zero exit and no traceback."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


# -- deploy data ------------------------------------------------------------------------------
def test_data_writes_the_month_into_the_data_dir(tmp_path: Path) -> None:
    result = deploy("data", "--month", "2021-03", "--rows", "500", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    path = tmp_path / month_file(2021, 3)
    assert f"wrote 500 rides to {path}" in result.stdout
    assert pq.read_schema(path).remove_metadata().equals(TLC_SCHEMA)
    assert pq.read_metadata(path).num_rows == 500


def test_data_out_and_env_bound_options(tmp_path: Path) -> None:
    out = tmp_path / "custom" / "trips.parquet"
    env = {"DEPLOY_SEED": "9", "DEPLOY_DEMO_ROWS": "321"}
    first = deploy("data", "--out", str(out), env=env)
    assert first.exit_code == 0, first.output
    assert pq.read_metadata(out).num_rows == 321
    again = tmp_path / "again.parquet"
    assert deploy("data", "--out", str(again), "--seed", "9", "--rows", "321").exit_code == 0
    assert pq.read_table(out).equals(pq.read_table(again))  # same seed, same rides


@pytest.mark.parametrize("month", ["2021-13", "2021-3", "march", ""])
def test_data_bad_month(tmp_path: Path, month: str) -> None:
    result = deploy("data", "--month", month, "--data-dir", str(tmp_path))
    assert_clean_error(result, "month must look like YYYY-MM")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows", ["-1", "abc", "1.5", "100000000000"])
def test_data_bad_rows_is_a_usage_error(tmp_path: Path, rows: str) -> None:
    result = deploy("data", "--rows", rows, "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "--rows" in result.output
    assert list(tmp_path.iterdir()) == []


def test_data_out_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = deploy("data", "--rows", "10", "--out", str(tmp_path / "file" / "t.parquet"))
    assert_clean_error(result, "is not a directory")


# -- deploy train -----------------------------------------------------------------------------
@pytest.fixture
def months(data_dir: Path, tmp_path: Path) -> Path:
    """Return a private data dir holding the two small generated months."""
    return Path(shutil.copytree(data_dir, tmp_path / "data"))


def test_train_writes_an_artifact_and_prints_the_rmse(months: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = deploy("train", "--data-dir", str(months), "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    rmse = manifest["metrics"]["val_rmse"]
    assert f"validation RMSE {rmse:.3f} min" in result.stdout
    assert f"version {manifest['version']}" in result.stdout
    assert load_model(out).version == manifest["version"]


def test_train_generates_missing_months_saying_so(tmp_path: Path) -> None:
    env = {"DEPLOY_DATA_DIR": str(tmp_path / "data"), "DEPLOY_MODEL_LOCATION": str(tmp_path / "m")}
    result = deploy(
        "train", "--train-month", "2020-05", "--val-month", "2020-06", "--rows", "1500", env=env
    )
    assert result.exit_code == 0, result.output
    assert "no data for 2020-05" in result.stdout and "generating 1,500 demo rides" in result.stdout
    assert (tmp_path / "data" / month_file(2020, 6)).is_file()
    assert (tmp_path / "m" / MODEL_FILE).is_file()


def test_train_random_forest(months: Path, tmp_path: Path) -> None:
    out = tmp_path / "forest"
    result = deploy(
        "train", "--data-dir", str(months), "--out", str(out), "--regressor", "random_forest"
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / MANIFEST_FILE).read_text())["regressor"] == "random_forest"


@pytest.mark.parametrize("name", ["xgboost", "os.system", "sklearn.nope.Regressor"])
def test_train_unknown_regressor(tmp_path: Path, name: str) -> None:
    result = deploy("train", "--regressor", name, "--data-dir", str(tmp_path / "data"))
    assert_clean_error(result, f"unknown regressor {name!r}", "random_forest")
    assert not (tmp_path / "data").exists()  # refused before generating anything


def test_train_bad_month_generates_nothing(tmp_path: Path) -> None:
    result = deploy("train", "--val-month", "2021-2", "--data-dir", str(tmp_path / "data"))
    assert_clean_error(result, "'2021-2'")
    assert not (tmp_path / "data").exists()


def test_train_on_a_garbage_month(months: Path, tmp_path: Path) -> None:
    (months / month_file(2021, 2)).write_text("not parquet")
    result = deploy("train", "--data-dir", str(months), "--out", str(tmp_path / "m"))
    assert_clean_error(result, "not a readable parquet file")
    assert not (tmp_path / "m").exists()


# -- deploy model show ------------------------------------------------------------------------
def test_model_show_prints_the_manifest(model_dir: Path) -> None:
    result = deploy("model", "show", str(model_dir))
    assert result.exit_code == 0, result.output
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    for text in (manifest["version"], manifest["sha256"], "val_rmse", "linear-table"):
        assert text in result.stdout


def test_model_show_json(model_dir: Path) -> None:
    result = deploy("model", "show", str(model_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads((model_dir / MANIFEST_FILE).read_text())


def test_model_show_missing_path(tmp_path: Path) -> None:
    assert_clean_error(deploy("model", "show", str(tmp_path / "nope")), "no model at")


def test_model_show_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    assert_clean_error(
        deploy("model", "show", str(path), "--trust-pickle"), "does not hold a model"
    )


def test_model_show_tampered(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    (copy / MODEL_FILE).write_bytes((copy / MODEL_FILE).read_bytes()[:-10])
    assert_clean_error(deploy("model", "show", str(copy)), "does not match the sha256")


def test_model_show_version_mismatch_is_one_warning_line(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["sklearn_version"] = "0.24.2"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    result = deploy("model", "show", str(copy))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "scikit-learn==0.24.2" in warnings[0]
    assert "warnings.warn" not in result.stderr


def test_model_show_needs_a_location() -> None:
    result = deploy("model", "show")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


# -- trust: deploy model show / convert -------------------------------------------------------
class _Payload:
    """Unpickling this writes a file: what a malicious pickle can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (Path.touch.__get__(self.marker), ())  # type: ignore[attr-defined]


def test_model_show_reads_a_pickle_without_unpickling_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "lin_reg.bin"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    result = deploy("model", "show", str(path))
    assert result.exit_code == 0, result.output
    assert "format: pickle" in result.stdout and "sha256: " in result.stdout
    assert "not checked: a pickle is loaded only with --trust-pickle" in result.stdout
    assert not marker.exists()


def test_model_show_says_which_path_and_why(model_dir: Path) -> None:
    result = deploy("model", "show", str(model_dir))
    assert result.exit_code == 0, result.output
    assert "prediction path: linear-table" in result.stdout
    assert "why: LinearRegression is linear; equals predict on" in result.stdout
    assert "feature scheme: pu_do" in result.stdout


def test_model_show_refuses_another_digest(model_dir: Path) -> None:
    other = "ab" * 32
    assert_clean_error(
        deploy("model", "show", str(model_dir), "--model-sha256", other),
        f"not the expected {other}",
    )
    env = {"DEPLOY_MODEL_SHA256": other}
    assert_clean_error(deploy("model", "show", str(model_dir), env=env), "not the expected")


def test_model_convert_turns_a_trusted_pickle_into_skops(model_dir: Path, tmp_path: Path) -> None:
    pipeline = load_model(model_dir).pipeline
    bare = tmp_path / "lin_reg.bin"
    bare.write_bytes(pickle.dumps((pipeline.steps[0][1], pipeline.steps[-1][1])))
    refused = deploy("model", "convert", str(bare), "--out", str(tmp_path / "no"))
    assert_clean_error(refused, "loading a pickle runs any code inside it", "--trust-pickle")
    assert not (tmp_path / "no").exists()
    out = tmp_path / "course"
    result = deploy("model", "convert", str(bare), "--out", str(out), "--trust-pickle")
    assert result.exit_code == 0, result.output
    assert "predictions equal on" in result.stdout and "max |diff| 0" in result.stdout
    assert (out / MODEL_FILE).is_file() and not (out / "model.pkl").exists()
    converted = load_model(out)  # no trust needed any more
    manifest = converted.manifest
    assert manifest["format"] == "skops"
    assert manifest["converted_from"]["format"] == "pickle"
    dicts = [{"PU_DO": "74_75", "trip_distance": 2.5}, {"PU_DO": "1_2", "trip_distance": 0.0}]
    assert list(converted.pipeline.predict(dicts)) == list(pipeline.predict(dicts))
