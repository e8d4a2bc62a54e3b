"""The model artifact: save, verify, and load every kind of model users bring."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sklearn
import yaml
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from deploy_modes.core import MODEL_NAME
from deploy_modes.core.artifact import (
    MANIFEST_FILE,
    MODEL_FILE,
    PICKLE_FILE,
    TREE_TYPES,
    LoadedModel,
    ModelVersionWarning,
    Trust,
    artifact_exists,
    inspect_model,
    load_model,
    save_model,
)
from deploy_modes.core.data import month_file
from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.core.training import train_model

OLD_SKLEARN = "0.24.2"
RIDE = {"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5}
# Pickles that reference sklearn code that no longer exists, as an old model's pickle does.
MISSING_MODULE_PICKLE = b"\x80\x02csklearn.linear_model._gone_in_1_2\nOldRegressor\n)\x81."
MISSING_CLASS_PICKLE = b"\x80\x02csklearn.linear_model\nRegressorRemovedLongAgo\n)\x81."
TRUST_PICKLE = Trust(pickle=True)  # these tests load pickles on purpose


@pytest.fixture
def artifact(model_dir: Path, tmp_path: Path) -> Path:
    """Return a private copy of the trained artifact, free to tamper with."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def _manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST_FILE).read_text())


def _write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def _with_model_bytes(directory: Path, blob: bytes, **fields: object) -> Path:
    """Replace the model file with a pickle ``blob`` and make the manifest match it."""
    (directory / MODEL_FILE).unlink()
    (directory / PICKLE_FILE).write_bytes(blob)
    manifest = _manifest(directory)
    manifest.update(sha256=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob), **fields)
    manifest.update(model_file=PICKLE_FILE, format="pickle")
    _write_manifest(directory, manifest)
    return directory


# -- our own artifact -------------------------------------------------------------------------
def test_manifest_records_what_the_issue_asks_for(model_dir: Path) -> None:
    manifest = _manifest(model_dir)
    blob = (model_dir / MODEL_FILE).read_bytes()
    assert manifest["name"] == MODEL_NAME
    assert manifest["sha256"] == hashlib.sha256(blob).hexdigest()
    assert manifest["version"] == manifest["sha256"][:12]
    assert manifest["size_bytes"] == len(blob)
    assert manifest["model_file"] == MODEL_FILE
    assert manifest["sklearn_version"] == sklearn.__version__
    assert manifest["python_version"].count(".") == 2
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert manifest["features"]["categorical"] == ["PU_DO"]
    assert manifest["features"]["numerical"] == ["trip_distance"]
    train, val = manifest["training"]["train"], manifest["training"]["validation"]
    assert (train["month"], val["month"]) == ("2021-01", "2021-02")
    assert 0 < train["rows_used"] < train["rows"]
    assert sum(train["rows_dropped"].values()) == train["rows"] - train["rows_used"]
    assert 0 < manifest["metrics"]["val_rmse"] < 20


def test_load_our_artifact(model_dir: Path) -> None:
    loaded = load_model(model_dir)
    assert isinstance(loaded, LoadedModel)
    assert loaded.version == _manifest(model_dir)["version"]
    assert loaded.name == MODEL_NAME
    assert loaded.source == str(model_dir)
    assert 1 < ModelService(loaded).predict_one(RIDE) < 60


def test_version_comes_from_the_content(data_dir: Path, tmp_path: Path) -> None:
    months = data_dir / month_file(2021, 1), data_dir / month_file(2021, 2)
    first = train_model(*months, tmp_path / "a").manifest
    second = train_model(*months, tmp_path / "b").manifest
    assert first["version"] == second["version"]  # same data, same code: same version
    assert first["created_at"] <= second["created_at"]
    third = train_model(*reversed(months), tmp_path / "c").manifest
    assert third["version"] != first["version"]


def test_metadata_cannot_contradict_the_file(loaded_model: LoadedModel, tmp_path: Path) -> None:
    manifest = save_model(loaded_model.pipeline, tmp_path / "m", {"sha256": "0" * 64, "x": 1})
    assert manifest["sha256"] != "0" * 64 and manifest["x"] == 1
    load_model(tmp_path / "m")


def test_tampered_model_file_is_refused(artifact: Path) -> None:
    blob = bytearray((artifact / MODEL_FILE).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (artifact / MODEL_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelLoadError, match=r"does not match the sha256.*modified or truncated"):
        load_model(artifact)


def test_truncated_model_file_is_refused(artifact: Path) -> None:
    blob = (artifact / MODEL_FILE).read_bytes()
    (artifact / MODEL_FILE).write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ModelLoadError, match=f"{len(blob) // 3} bytes read, {len(blob)} expected"):
        load_model(artifact)


def test_missing_model_file_is_refused(artifact: Path) -> None:
    (artifact / MODEL_FILE).unlink()
    with pytest.raises(ModelLoadError, match="is missing: the artifact is incomplete"):
        load_model(artifact)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "not a deploy-modes manifest"),
        ('{"name": "x"}', "not a deploy-modes manifest"),
        ('{"sha256": 5}', "not a deploy-modes manifest"),
    ],
)
def test_broken_manifest_is_refused(artifact: Path, content: str, message: str) -> None:
    (artifact / MANIFEST_FILE).write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(artifact)


def test_binary_manifest_is_refused(artifact: Path) -> None:
    (artifact / MANIFEST_FILE).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelLoadError, match="is not valid JSON"):
        load_model(artifact)


@pytest.mark.parametrize("name", ["../model.pkl", "/etc/passwd", "sub/model.pkl", ".."])
def test_manifest_cannot_point_outside_its_directory(artifact: Path, name: str) -> None:
    manifest = _manifest(artifact)
    manifest["model_file"] = name
    _write_manifest(artifact, manifest)
    with pytest.raises(ModelLoadError, match="outside its directory"):
        load_model(artifact)


def test_no_model_there(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model at .*deploy train"):
        load_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match=r"holds neither manifest.json"):
        load_model(tmp_path)
    assert not artifact_exists(tmp_path) and not artifact_exists(tmp_path / "missing")


def test_artifact_exists(model_dir: Path, course_pickle: Path) -> None:
    assert artifact_exists(model_dir) and artifact_exists(course_pickle)


# -- scikit-learn versions --------------------------------------------------------------------
def test_version_mismatch_warns_naming_both_versions(artifact: Path) -> None:
    manifest = _manifest(artifact)
    manifest["sklearn_version"] = OLD_SKLEARN
    _write_manifest(artifact, manifest)
    with pytest.warns(ModelVersionWarning) as record:
        loaded = load_model(artifact)
    [warning] = [w for w in record if issubclass(w.category, ModelVersionWarning)]
    text = str(warning.message)
    assert OLD_SKLEARN in text and sklearn.__version__ in text
    assert f"scikit-learn=={OLD_SKLEARN}" in text
    assert 1 < ModelService(loaded).predict_one(RIDE) < 60  # a warning, not an error


@pytest.mark.parametrize("version", [OLD_SKLEARN, "9.0.0"])  # older and newer than ours
def test_unpickling_failure_from_another_sklearn_names_the_version_to_install(
    artifact: Path, version: str
) -> None:
    _with_model_bytes(artifact, MISSING_MODULE_PICKLE, sklearn_version=version)
    with (
        pytest.warns(ModelVersionWarning),
        pytest.raises(ModelLoadError, match=rf"install scikit-learn=={version} to serve it"),
    ):
        load_model(artifact, TRUST_PICKLE)


@pytest.mark.parametrize("blob", [MISSING_MODULE_PICKLE, MISSING_CLASS_PICKLE])
def test_unpickling_failure_of_an_unlabelled_pickle_blames_the_version(
    tmp_path: Path, blob: bytes
) -> None:
    path = tmp_path / "old.bin"
    path.write_bytes(blob)
    with pytest.raises(ModelLoadError, match="another scikit-learn version than"):
        load_model(path, TRUST_PICKLE)


@pytest.mark.parametrize("module", ["xgboost_is_not_here", "catboost_is_not_here"])
def test_a_missing_third_party_module_is_named(tmp_path: Path, module: str) -> None:
    # Names sorting after "sklearn" and before it: only sklearn's own modules blame the version.
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x02c" + module.encode() + b".sklearn\nRegressor\n)\x81.")
    with pytest.raises(ModelLoadError, match=f"provides '{module}'"):
        load_model(path, TRUST_PICKLE)


def test_a_pickle_recording_another_sklearn_warns(tmp_path: Path, course_pickle: Path) -> None:
    # sklearn stores its version inside each estimator's pickled state; fake an older one.
    current = sklearn.__version__.encode()
    older = b"0.0.0"[: len(current)].ljust(len(current), b"0")
    blob = course_pickle.read_bytes()
    assert current in blob
    path = tmp_path / "lin_reg.bin"
    path.write_bytes(blob.replace(current, older))
    with pytest.warns(ModelVersionWarning, match=older.decode()):
        loaded = load_model(path, TRUST_PICKLE)
    assert loaded.manifest["sklearn_version"] == older.decode()


# -- what users bring from the course ---------------------------------------------------------
def test_bare_course_tuple_pickle(course_pickle: Path) -> None:
    loaded = load_model(course_pickle, TRUST_PICKLE)
    blob = course_pickle.read_bytes()
    assert loaded.manifest["format"] == "pickle"
    assert loaded.manifest["sha256"] == hashlib.sha256(blob).hexdigest()
    assert loaded.manifest["version"] == loaded.manifest["sha256"][:12]
    assert loaded.manifest["sklearn_version"] == sklearn.__version__
    dv, model = pickle.loads(blob)
    expected = model.predict(dv.transform([{"PU_DO": "74_75", "trip_distance": 2.5}]))[0]
    assert ModelService(loaded).predict_one(RIDE) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"not": "a model"}, "does not hold a model.*got dict"),
        ([1, 2, 3], "does not hold a model.*got list"),
        ((DictVectorizer(), "estimator"), "does not hold a model.*got tuple"),
        ((DictVectorizer(),), "does not hold a model.*got tuple"),
        ((DictVectorizer(), LinearRegression(), "extra"), "does not hold a model.*got tuple"),
        (
            make_pipeline(StandardScaler(), LinearRegression()),
            "first step is not a DictVectorizer",
        ),
        (make_pipeline(DictVectorizer(), LinearRegression()), "unfitted model"),
    ],
    ids=[
        "dict",
        "list",
        "tuple-without-estimator",
        "vectorizer-only",
        "three-tuple",
        "no-vectorizer",
        "unfitted",
    ],
)
def test_pickle_of_something_that_is_not_a_model(tmp_path: Path, obj: object, message: str) -> None:
    path = tmp_path / "thing.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ModelLoadError, match=message):
        load_model(path, TRUST_PICKLE)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am not a pickle", b"\x80\x05\x95", None],
    ids=["empty", "text", "header-only", "truncated"],
)
def test_unreadable_bare_pickle(tmp_path: Path, course_pickle: Path, content: bytes | None) -> None:
    if content is None:
        content = course_pickle.read_bytes()[:200]
    path = tmp_path / "broken.bin"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="not a readable pickle"):
        load_model(path, TRUST_PICKLE)


def _mlflow_dir(root: Path, loaded: LoadedModel, **flavor: object) -> Path:
    directory = root / "mlflow-model"
    directory.mkdir()
    (directory / "model.pkl").write_bytes(pickle.dumps(loaded.pipeline))
    mlmodel = {
        "artifact_path": "model",
        "run_id": "abc123",
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"},
            "sklearn": {
                "pickled_model": "model.pkl",
                "serialization_format": "cloudpickle",
                "sklearn_version": sklearn.__version__,
                **flavor,
            },
        },
    }
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return directory


def test_mlflow_model_directory(loaded_model: LoadedModel, tmp_path: Path) -> None:
    loaded = load_model(_mlflow_dir(tmp_path, loaded_model), TRUST_PICKLE)
    assert loaded.manifest["format"] == "mlflow"
    assert loaded.manifest["run_id"] == "abc123"
    assert loaded.manifest["sklearn_version"] == sklearn.__version__
    assert ModelService(loaded).predict_one(RIDE) == ModelService(loaded_model).predict_one(RIDE)


def test_mlflow_sklearn_version_comes_from_mlmodel(
    loaded_model: LoadedModel, tmp_path: Path
) -> None:
    directory = _mlflow_dir(tmp_path, loaded_model, sklearn_version=OLD_SKLEARN)
    with pytest.warns(ModelVersionWarning, match=f"{OLD_SKLEARN}.*{sklearn.__version__}"):
        loaded = load_model(directory, TRUST_PICKLE)
    assert loaded.manifest["sklearn_version"] == OLD_SKLEARN


def test_mlflow_directory_without_model_pkl(loaded_model: LoadedModel, tmp_path: Path) -> None:
    directory = _mlflow_dir(tmp_path, loaded_model)
    (directory / "model.pkl").unlink()
    with pytest.raises(ModelLoadError, match=r"MLflow model file .*model.pkl is missing"):
        load_model(directory)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("flavors: [unclosed", "not valid YAML"),
        ("- a\n- list\n", "no sklearn flavor"),
        ("flavors:\n  python_function: {}\n", "no sklearn flavor"),
        ("flavors: 5\n", "no sklearn flavor"),
    ],
)
def test_broken_mlmodel(
    loaded_model: LoadedModel, tmp_path: Path, content: str, message: str
) -> None:
    directory = _mlflow_dir(tmp_path, loaded_model)
    (directory / "MLmodel").write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(directory)


# -- S3 (real moto server) --------------------------------------------------------------------
@pytest.fixture
def bucket(moto_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Return a fresh bucket on the real moto server, with boto3 pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    name = f"models-{uuid.uuid4().hex[:8]}"
    aws_client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


@pytest.mark.integration
def test_a_console_made_s3_folder_loads_as_a_directory(bucket: str, model_dir: Path) -> None:
    # The S3 console makes a folder as an empty object named "prefix/": the prefix then lists
    # that marker ("") besides the model's files, and is still a model directory.
    s3 = aws_client("s3")
    s3.put_object(Bucket=bucket, Key="models/", Body=b"")
    for name in (MODEL_FILE, MANIFEST_FILE):
        s3.put_object(Bucket=bucket, Key=f"models/{name}", Body=(model_dir / name).read_bytes())
    assert load_model(f"s3://{bucket}/models").version == _manifest(model_dir)["version"]


@pytest.mark.integration
def test_a_model_file_archived_to_glacier_is_a_model_load_error(
    bucket: str, model_dir: Path
) -> None:
    # Listed under the prefix, but S3 refuses to read an archived object until it is restored.
    s3 = aws_client("s3")
    s3.put_object(
        Bucket=bucket, Key=f"old/{MANIFEST_FILE}", Body=(model_dir / MANIFEST_FILE).read_bytes()
    )
    s3.put_object(
        Bucket=bucket,
        Key=f"old/{MODEL_FILE}",
        Body=(model_dir / MODEL_FILE).read_bytes(),
        StorageClass="GLACIER",
    )
    with pytest.raises(ModelLoadError, match=f"s3://{bucket}/old/{MODEL_FILE}"):
        load_model(f"s3://{bucket}/old")


@pytest.mark.integration
def test_save_and_load_from_s3(bucket: str, loaded_model: LoadedModel) -> None:
    uri = f"s3://{bucket}/ride-duration"
    manifest = save_model(loaded_model.pipeline, uri, {"note": "s3"})
    loaded = load_model(uri)
    assert loaded.version == manifest["version"]
    assert loaded.manifest["note"] == "s3"
    assert loaded.source == uri
    assert ModelService(loaded).predict_one(RIDE) == ModelService(loaded_model).predict_one(RIDE)
    assert load_model(uri + "/").version == loaded.version


@pytest.mark.integration
def test_tampered_model_on_s3_names_the_uri(bucket: str, loaded_model: LoadedModel) -> None:
    uri = f"s3://{bucket}/tampered"
    save_model(loaded_model.pipeline, uri)
    aws_client("s3").put_object(Bucket=bucket, Key=f"tampered/{MODEL_FILE}", Body=b"evil")
    with pytest.raises(ModelLoadError, match=f"{uri}/{MODEL_FILE} does not match the sha256"):
        load_model(uri)


@pytest.mark.integration
def test_bare_pickle_and_mlflow_on_s3(
    bucket: str, course_pickle: Path, loaded_model: LoadedModel, tmp_path: Path
) -> None:
    s3 = aws_client("s3")
    s3.put_object(Bucket=bucket, Key="course/lin_reg.bin", Body=course_pickle.read_bytes())
    assert (
        load_model(f"s3://{bucket}/course/lin_reg.bin", TRUST_PICKLE).manifest["format"] == "pickle"
    )
    directory = _mlflow_dir(tmp_path, loaded_model)
    for name in ("MLmodel", "model.pkl"):
        s3.put_object(Bucket=bucket, Key=f"mlflow/{name}", Body=(directory / name).read_bytes())
    assert load_model(f"s3://{bucket}/mlflow", TRUST_PICKLE).manifest["format"] == "mlflow"


@pytest.mark.integration
def test_missing_things_on_s3(bucket: str) -> None:
    aws_client("s3").put_object(Bucket=bucket, Key="other/readme.txt", Body=b"hi")
    with pytest.raises(ModelLoadError, match=f"s3://{bucket}/other holds neither"):
        load_model(f"s3://{bucket}/other")
    with pytest.raises(ModelLoadError, match="S3 object does not exist"):
        load_model(f"s3://{bucket}/nothing-here")
    with pytest.raises(ModelLoadError, match="S3 bucket does not exist"):
        load_model(f"s3://{bucket}-missing/model")


# -- trust: no code runs on load unless the user says so ----------------------------------------
class _Payload:
    """An object whose unpickling writes a file: what a malicious pickle can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch.__get__(self.marker), ())  # type: ignore[attr-defined]


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def test_a_pickle_is_refused_by_default_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _evil_pickle(tmp_path / "lin_reg.bin", marker)
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    message = str(info.value)
    assert "loading a pickle runs any code inside it" in message
    assert "--trust-pickle" in message and "DEPLOY_TRUST_PICKLE=1" in message
    assert f"deploy model convert {path}" in message and "\n" not in message
    assert not marker.exists()
    # The control: trusting it does run it, which is why it is refused by default.
    with pytest.raises(ModelLoadError, match="does not hold a model"):
        load_model(path, TRUST_PICKLE)
    assert marker.exists()


def test_old_pickle_artifacts_and_mlflow_pickles_are_refused_by_default(
    artifact: Path, loaded_model: LoadedModel, tmp_path: Path
) -> None:
    _with_model_bytes(artifact, pickle.dumps(loaded_model.pipeline))
    with pytest.raises(ModelLoadError, match=f"{artifact}/{PICKLE_FILE} is a pickle"):
        load_model(artifact)
    assert load_model(artifact, TRUST_PICKLE).version == _manifest(artifact)["version"]
    with pytest.raises(ModelLoadError, match=r"model\.pkl is a pickle"):
        load_model(_mlflow_dir(tmp_path, loaded_model))


def test_the_environment_can_trust_pickles(
    course_pickle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelLoadError, match="is a pickle"):
        load_model(course_pickle)
    monkeypatch.setenv("DEPLOY_TRUST_PICKLE", "1")
    assert load_model(course_pickle).manifest["format"] == "pickle"


def test_inspect_reads_the_manifest_and_hash_without_unpickling(
    model_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    path = _evil_pickle(tmp_path / "model.pkl", marker)
    manifest = inspect_model(path)
    assert manifest["format"] == "pickle" and not marker.exists()
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["version"] == manifest["sha256"][:12]  # never empty
    assert inspect_model(model_dir) == {**_manifest(model_dir), "format": "skops"}


def test_a_skops_type_not_trusted_is_refused_by_name(
    loaded_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sklearn.preprocessing import FunctionTransformer

    pipeline = loaded_model.pipeline
    evil = make_pipeline(pipeline.steps[0][1], FunctionTransformer(os.system), pipeline[-1])
    save_model(evil, tmp_path / "evil")
    with pytest.raises(ModelLoadError, match=r"types skops does not trust by default: .*system"):
        load_model(tmp_path / "evil")


def test_forest_tree_types_need_trust(
    forest_service: ModelService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_model(forest_service.pipeline, tmp_path / "forest")
    with pytest.raises(ModelLoadError) as info:
        load_model(tmp_path / "forest")
    assert "sklearn.tree._tree.Tree" in str(info.value)
    assert "DEPLOY_TRUSTED_TYPES=sklearn.tree._tree.Tree" in str(info.value)
    monkeypatch.setenv("DEPLOY_TRUSTED_TYPES", "sklearn.tree._tree.Tree")
    assert ModelService(load_model(tmp_path / "forest")).scoring_path == "sparse"


def test_an_expected_digest_from_outside_the_artifact(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = _manifest(model_dir)["sha256"]
    assert load_model(model_dir, Trust(sha256=digest.upper())).manifest["sha256"] == digest
    other = "0" * 64
    with pytest.raises(ModelLoadError, match=f"has sha256 {digest}, not the expected {other}"):
        load_model(model_dir, Trust(sha256=other))
    with pytest.raises(ModelLoadError, match="not 64 hex digits"):
        load_model(model_dir, Trust(sha256="abc"))
    with pytest.raises(ModelLoadError, match="not 64 hex digits"):
        load_model(model_dir, Trust(sha256=digest + "0"))  # one digit too many
    monkeypatch.setenv("DEPLOY_MODEL_SHA256", other)
    with pytest.raises(ModelLoadError, match="DEPLOY_MODEL_SHA256"):
        load_model(model_dir)
    with pytest.raises(ModelLoadError, match="not the expected"):
        inspect_model(model_dir, other)


def test_a_corrupt_skops_file_is_one_clear_error(artifact: Path) -> None:
    blob = (artifact / MODEL_FILE).read_bytes()[:300]
    (artifact / MODEL_FILE).write_bytes(blob)
    manifest = _manifest(artifact)
    manifest.update(sha256=hashlib.sha256(blob).hexdigest())
    _write_manifest(artifact, manifest)
    with pytest.raises(ModelLoadError, match="not a readable skops file"):
        load_model(artifact)


def test_an_unreadable_model_file_keeps_its_error(artifact: Path, tmp_path: Path) -> None:
    # /proc/self/mem is a regular file whose plain read fails (EIO), even for root.
    (artifact / MODEL_FILE).unlink()
    (artifact / MODEL_FILE).symlink_to("/proc/self/mem")
    with pytest.raises(ModelLoadError, match=f"cannot read {artifact / MODEL_FILE}: Input/output"):
        load_model(artifact)
    bare = tmp_path / "lin_reg.bin"
    bare.symlink_to("/proc/self/mem")
    with pytest.raises(ModelLoadError, match=f"cannot read {bare}: Input/output"):
        inspect_model(bare)


def test_a_trust_built_by_hand_trusts_no_pickle_unless_told(course_pickle: Path) -> None:
    # A library caller widening only the skops types must not also be trusting pickles.
    for trust in (Trust(), Trust(types=TREE_TYPES)):
        with pytest.raises(ModelLoadError, match="is a pickle"):
            load_model(course_pickle, trust)


@pytest.mark.parametrize("recorded", ["0" * 64, "f" * 64])
def test_a_manifest_hash_that_sorts_either_side_of_the_file_is_refused(
    artifact: Path, recorded: str
) -> None:
    # A modified file's hash is as likely to sort below the recorded one as above it.
    manifest = _manifest(artifact)
    _write_manifest(artifact, {**manifest, "sha256": recorded})
    with pytest.raises(ModelLoadError, match="does not match the sha256 in its manifest"):
        load_model(artifact)


def test_inspect_names_the_format_of_old_artifacts_and_mlflow_models(
    artifact: Path, loaded_model: LoadedModel, tmp_path: Path
) -> None:
    # Artifacts written before skops record no format: their model.pkl makes them pickles.
    _with_model_bytes(artifact, pickle.dumps(loaded_model.pipeline))
    manifest = _manifest(artifact)
    del manifest["format"]
    _write_manifest(artifact, manifest)
    assert inspect_model(artifact)["format"] == "pickle"
    assert inspect_model(_mlflow_dir(tmp_path, loaded_model))["format"] == "mlflow"


def test_a_bare_skops_file_loads_without_its_manifest(model_dir: Path, tmp_path: Path) -> None:
    bare = Path(shutil.copy(model_dir / MODEL_FILE, tmp_path / "ride.skops"))
    loaded = load_model(bare)
    digest = hashlib.sha256(bare.read_bytes()).hexdigest()
    assert (loaded.manifest["format"], loaded.manifest["sha256"]) == ("skops", digest)
    assert loaded.version == digest[:12]
    ours = ModelService(load_model(model_dir))
    assert ModelService(loaded).predict_one(RIDE) == ours.predict_one(RIDE)


@pytest.mark.parametrize(
    ("source", "named"), [("s3://models/tips", "s3://models/tips"), ("", "the model")]
)
def test_a_model_of_another_target_is_refused_naming_where_it_came_from(
    loaded_model: LoadedModel, source: str, named: str
) -> None:
    manifest = {**loaded_model.manifest, "features": {"target": "tip_amount"}}
    model = LoadedModel(loaded_model.pipeline, manifest, source)
    with pytest.raises(
        ModelLoadError, match=f"^{named} predicts tip_amount, but this mode"
    ) as info:
        model.check_target(("duration",))
    assert f"`deploy stream consume --model {source or 'DIR'}`" in str(info.value)


def test_an_old_pickle_artifact_without_a_format_field_loads(
    artifact: Path, loaded_model: LoadedModel
) -> None:
    # Artifacts written before skops had no "format" in their manifest.
    _with_model_bytes(artifact, pickle.dumps(loaded_model.pipeline))
    manifest = _manifest(artifact)
    del manifest["format"]
    _write_manifest(artifact, manifest)
    loaded = load_model(artifact, TRUST_PICKLE)
    assert loaded.manifest == manifest
    assert ModelService(loaded).predict_one(RIDE) == ModelService(loaded_model).predict_one(RIDE)


class _Halve:
    """A step from no library: a transform and nothing sklearn can check for fitting."""

    def transform(self, rows: object) -> object:
        return rows * 0.5  # type: ignore[operator]


def test_a_pipeline_step_sklearn_cannot_check_is_not_called_unfitted(
    loaded_model: LoadedModel, tmp_path: Path
) -> None:
    vectorizer, regressor = (step for _, step in loaded_model.pipeline.steps)
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps(make_pipeline(vectorizer, _Halve(), regressor)))
    loaded = load_model(path, TRUST_PICKLE)  # refused as "unfitted" if the step were judged
    expected = loaded.pipeline.predict([{"PU_DO": "74_75", "trip_distance": 2.5}])[0]
    assert ModelService(loaded).predict_one(RIDE) == pytest.approx(expected, abs=1e-9)
    assert expected != pytest.approx(ModelService(loaded_model).predict_one(RIDE), abs=1e-3)


@pytest.mark.parametrize("expected", ["0" * 64, "f" * 64])
def test_an_expected_digest_sorting_either_side_of_the_file_is_refused(
    model_dir: Path, expected: str
) -> None:
    with pytest.raises(ModelLoadError, match=f"not the expected {expected}"):
        load_model(model_dir, Trust(sha256=expected))


@pytest.mark.parametrize(
    "trust", [Trust(), Trust(pickle=True, types=TREE_TYPES, sha256="ab" * 32)], ids=["none", "all"]
)
def test_a_trust_passed_to_a_child_through_the_environment_is_the_same_trust(
    trust: Trust, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in trust.env().items():
        monkeypatch.setenv(name, value)
    assert Trust.from_settings() == trust


def test_the_version_does_not_depend_on_the_process_that_saves(
    model_dir: Path, tmp_path: Path
) -> None:
    # skops names objects by their memory address: another process, other addresses, and the
    # same model must still hash (and so version) the same.
    code = (
        "import sys; from deploy_modes.core.artifact import load_model, save_model; "
        "print(save_model(load_model(sys.argv[1]).pipeline, sys.argv[2])['version'])"
    )
    again = subprocess.run(
        [sys.executable, "-c", code, str(model_dir), str(tmp_path / "again")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert again.stdout.strip() == _manifest(model_dir)["version"]


def test_a_trust_once_granted_cannot_be_widened() -> None:
    trust = Trust(types=TREE_TYPES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trust.pickle = True  # type: ignore[misc]


def _rewritten_skops(source: Path, target: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """Copy the .skops zip at ``source`` to ``target``, each member passed through ``change``."""
    with zipfile.ZipFile(source) as reading, zipfile.ZipFile(target, "w") as writing:
        for info in reading.infolist():
            writing.writestr(info, change(info.filename, reading.read(info)))
    return target


def test_a_bare_skops_file_from_another_sklearn_warns_naming_it(
    model_dir: Path, tmp_path: Path
) -> None:
    # A bare .skops file has no manifest: the version it was trained with is only in its
    # estimators' state, which sklearn reads back (and warns about) while skops loads it.
    bare = _rewritten_skops(
        model_dir / MODEL_FILE,
        tmp_path / "old.skops",
        lambda name, data: (
            data.replace(f'\\"{sklearn.__version__}\\"'.encode(), b'\\"1.0.2\\"')
            if name == "schema.json"
            else data
        ),
    )
    with pytest.warns(ModelVersionWarning, match=r"scikit-learn 1\.0\.2 but this environment"):
        load_model(bare)


def test_a_skops_file_whose_arrays_are_corrupt_is_one_clear_error(
    model_dir: Path, tmp_path: Path
) -> None:
    # The schema passes the type check; an array member it names is garbage.
    bare = _rewritten_skops(
        model_dir / MODEL_FILE,
        tmp_path / "broken.skops",
        lambda name, data: b"not an array" if name.endswith(".npy") else data,
    )
    with pytest.raises(ModelLoadError, match=f"cannot load {bare}: "):
        load_model(bare)
