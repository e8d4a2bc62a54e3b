"""The model artifact: a directory with the pickled pipeline and a JSON manifest.

:func:`load_model` is the one loader every mode uses. Besides our own artifact directory it
accepts what users bring from the course: a bare pickle of ``(DictVectorizer, estimator)``
(``lin_reg.bin``) and an MLflow sklearn model directory (``MLmodel`` + ``model.pkl``), without
needing mlflow installed.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import platform
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn
import yaml
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline, make_pipeline

from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.core.storage import is_s3, list_s3, read_bytes, write_bytes

__all__ = [
    "MANIFEST_FILE",
    "MODEL_FILE",
    "LoadedModel",
    "ModelVersionWarning",
    "artifact_exists",
    "load_model",
    "save_model",
]

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.pkl"
MLMODEL_FILE = "MLmodel"
MODEL_NAME = "ride_duration_prediction_model"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".joblib")


class ModelVersionWarning(UserWarning):
    """The model was trained with another scikit-learn version than the one serving it."""


@dataclass
class LoadedModel:
    """A loaded pipeline (``DictVectorizer`` then estimator) and its manifest."""

    pipeline: Pipeline
    manifest: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def version(self) -> str:
        """Return the model version recorded in the manifest."""
        return str(self.manifest.get("version", "unknown"))

    @property
    def name(self) -> str:
        """Return the model name recorded in the manifest."""
        return str(self.manifest.get("name", MODEL_NAME))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    pipeline: Pipeline, directory: str | Path, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``model.pkl`` and ``manifest.json`` into ``directory`` and return the manifest.

    The version is derived from the model file's content hash, so retraining on the same data
    with the same code gives the same version.
    """
    blob = pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)
    digest = _sha256(blob)
    manifest: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": digest[:12],
        "model_file": MODEL_FILE,
        "sha256": digest,
        "size_bytes": len(blob),
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(metadata or {}),
    }
    target = str(directory).rstrip("/")
    # Model first, manifest last: a reader that finds a manifest finds its model too.
    write_bytes(f"{target}/{MODEL_FILE}", blob)
    write_bytes(f"{target}/{MANIFEST_FILE}", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def artifact_exists(location: str | Path) -> bool:
    """Return whether a local model artifact (any accepted kind) exists at ``location``."""
    path = Path(location)
    if path.is_dir():
        return (path / MANIFEST_FILE).is_file() or (path / MLMODEL_FILE).is_file()
    return path.is_file()


def load_model(location: str | Path) -> LoadedModel:
    """Load a model from a local path or ``s3://`` URI, checking its hash and sklearn version."""
    where = str(location)
    if is_s3(where):
        return _load_s3(where)
    path = Path(where)
    if path.is_dir():
        if (path / MANIFEST_FILE).is_file():
            return _load_artifact_dir(path)
        if (path / MLMODEL_FILE).is_file():
            return _load_mlflow_dir(path)
        raise ModelLoadError(
            f"{path} is a directory but holds neither {MANIFEST_FILE} (a deploy-modes artifact) "
            f"nor {MLMODEL_FILE} (an MLflow model): train one with `deploy train`"
        )
    if path.is_file():
        return _load_bare_pickle(path.read_bytes(), str(path))
    raise ModelLoadError(f"no model at {path}: train one with `deploy train --out {path}`")


def _load_s3(uri: str) -> LoadedModel:
    try:
        keys = list_s3(uri)
    except DeployError as exc:
        raise ModelLoadError(str(exc)) from exc
    if not keys or keys == [""]:
        # Not a prefix: a single object, i.e. a bare pickle.
        try:
            return _load_bare_pickle(read_bytes(uri), uri)
        except ModelLoadError:
            raise
        except DeployError as exc:
            raise ModelLoadError(f"no model at {uri}: {exc}") from exc
    wanted = {MANIFEST_FILE, MODEL_FILE, MLMODEL_FILE}
    with tempfile.TemporaryDirectory(prefix="deploy-model-") as tmp:
        for key in keys:
            if key in wanted:
                (Path(tmp) / key).write_bytes(read_bytes(f"{uri.rstrip('/')}/{key}"))
        loaded = load_model(tmp)
    loaded.source = uri
    return loaded


def _load_artifact_dir(path: Path) -> LoadedModel:
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path / MANIFEST_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise ModelLoadError(f"{path / MANIFEST_FILE} is not a deploy-modes manifest (no sha256)")
    model_path = path / str(manifest.get("model_file", MODEL_FILE))
    if not model_path.is_file():
        raise ModelLoadError(f"{model_path} is missing: the artifact is incomplete")
    blob = model_path.read_bytes()
    if _sha256(blob) != manifest["sha256"]:
        raise ModelLoadError(
            f"{model_path} does not match the sha256 in its manifest "
            f"({len(blob)} bytes read, {manifest.get('size_bytes', '?')} expected): "
            "the file was modified or truncated; refusing to load it"
        )
    trained_with = manifest.get("sklearn_version")
    pipeline, _ = _unpickle(blob, str(model_path), trained_with)
    return LoadedModel(pipeline, manifest, str(path))


def _load_mlflow_dir(path: Path) -> LoadedModel:
    try:
        mlmodel = yaml.safe_load((path / MLMODEL_FILE).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{path / MLMODEL_FILE} is not valid YAML: {exc}") from exc
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        raise ModelLoadError(f"{path / MLMODEL_FILE} has no sklearn flavor: not an sklearn model")
    model_path = path / str(flavor.get("pickled_model", MODEL_FILE))
    if not model_path.is_file():
        raise ModelLoadError(f"MLflow model file {model_path} is missing")
    blob = model_path.read_bytes()
    trained_with = flavor.get("sklearn_version")
    pipeline, _ = _unpickle(blob, str(model_path), trained_with)
    manifest = _derived_manifest(blob, trained_with, "mlflow")
    if mlmodel.get("run_id"):
        manifest["run_id"] = mlmodel["run_id"]
    return LoadedModel(pipeline, manifest, str(path))


def _load_bare_pickle(blob: bytes, source: str) -> LoadedModel:
    pipeline, pickled_with = _unpickle(blob, source, None)
    trained_with = pickled_with or sklearn.__version__
    _check_version(trained_with, source)
    return LoadedModel(pipeline, _derived_manifest(blob, trained_with, "pickle"), source)


def _derived_manifest(blob: bytes, trained_with: str | None, kind: str) -> dict[str, Any]:
    digest = _sha256(blob)
    return {
        "name": MODEL_NAME,
        "version": digest[:12],
        "sha256": digest,
        "size_bytes": len(blob),
        "sklearn_version": trained_with,
        "format": kind,
    }


def _check_version(trained_with: str | None, source: str) -> None:
    if trained_with and trained_with != sklearn.__version__:
        warnings.warn(
            ModelVersionWarning(
                f"{source} was trained with scikit-learn {trained_with} but this environment "
                f"runs {sklearn.__version__}: predictions may differ; serve it with "
                f"scikit-learn=={trained_with}"
            ),
            stacklevel=3,
        )


def _unpickle(blob: bytes, source: str, trained_with: str | None) -> tuple[Pipeline, str | None]:
    """Return the pipeline and the sklearn version the pickle itself records (if another)."""
    if trained_with is not None:
        _check_version(trained_with, source)
    try:
        # sklearn records its version in each estimator's state and warns on a mismatch;
        # we turn that into our own ModelVersionWarning, which says how to fix it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InconsistentVersionWarning)
            obj = pickle.load(io.BytesIO(blob))  # loading a model is the point
    except (AttributeError, ModuleNotFoundError, ImportError, TypeError) as exc:
        hint = (
            f" It was trained with scikit-learn {trained_with}; install "
            f"scikit-learn=={trained_with} to serve it."
            if trained_with and trained_with != sklearn.__version__
            else " It may come from another scikit-learn version than "
            f"{sklearn.__version__}: serve it with the version that trained it."
        )
        raise ModelLoadError(f"cannot unpickle {source}: {exc}.{hint}") from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise ModelLoadError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {exc}): "
            "the file is corrupt, truncated or not a model"
        ) from exc
    pickled_with = next(
        (
            w.message.original_sklearn_version
            for w in caught
            if isinstance(w.message, InconsistentVersionWarning)
        ),
        None,
    )
    return _as_pipeline(obj, source), pickled_with


def _as_pipeline(obj: Any, source: str) -> Pipeline:
    if isinstance(obj, Pipeline):
        if not isinstance(obj.steps[0][1], DictVectorizer):
            raise ModelLoadError(
                f"{source} holds a Pipeline whose first step is not a DictVectorizer"
            )
        return obj
    if (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], DictVectorizer)
        and hasattr(obj[1], "predict")
    ):
        return make_pipeline(obj[0], obj[1])
    raise ModelLoadError(
        f"{source} does not hold a model: expected an sklearn Pipeline or a "
        f"(DictVectorizer, estimator) tuple, got {type(obj).__name__}"
    )
