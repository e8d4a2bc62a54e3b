"""The model artifact: a directory with the pickled pipeline and a JSON manifest.

:func:`load_model` is the one loader every mode uses. Besides our own artifact directory it
accepts what users bring from the course: a bare pickle of ``(DictVectorizer, estimator)``
(``lin_reg.bin``) and an MLflow sklearn model directory (``MLmodel`` + ``model.pkl``), without
needing mlflow installed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import sklearn
import yaml
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.core.naming import MODEL_NAME
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
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(metadata or {}),
        # Integrity fields come last so metadata can never contradict the file.
        "model_file": MODEL_FILE,
        "sha256": digest,
        "size_bytes": len(blob),
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
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
        files = _Files(
            where, lambda name: _read_local(path / name), lambda name: (path / name).is_file()
        )
        return _load_dir(files)
    if path.is_file():
        return _load_bare_pickle(_read_local(path), str(path))
    raise ModelLoadError(f"no model at {path}: train one with `deploy train --out {path}`")


@dataclass(frozen=True)
class _Files:
    """The files of a model directory, local or under an S3 prefix, named by ``where``."""

    where: str
    read: Callable[[str], bytes]
    exists: Callable[[str], bool]

    def label(self, name: str) -> str:
        return f"{self.where.rstrip('/')}/{name}"


def _read_local(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _load_s3(uri: str) -> LoadedModel:
    try:
        keys = set(list_s3(uri))
    except DeployError as exc:
        raise ModelLoadError(str(exc)) from exc
    if not keys or keys == {""}:
        # Not a prefix: a single object, i.e. a bare pickle.
        try:
            blob = read_bytes(uri)
        except DeployError as exc:
            raise ModelLoadError(f"no model at {uri}: {exc}") from exc
        return _load_bare_pickle(blob, uri)

    def read(name: str) -> bytes:
        try:
            return read_bytes(f"{uri.rstrip('/')}/{name}")
        except DeployError as exc:
            raise ModelLoadError(str(exc)) from exc

    return _load_dir(_Files(uri, read, lambda name: name in keys))


def _load_dir(files: _Files) -> LoadedModel:
    if files.exists(MANIFEST_FILE):
        return _load_artifact_dir(files)
    if files.exists(MLMODEL_FILE):
        return _load_mlflow_dir(files)
    raise ModelLoadError(
        f"{files.where} holds neither {MANIFEST_FILE} (a deploy-modes artifact) "
        f"nor {MLMODEL_FILE} (an MLflow model): train one with `deploy train`"
    )


def _file_name(value: object, default: str, source: str) -> str:
    """Return a plain file name from a manifest; never a path that leaves the directory."""
    name = str(value or default)
    if name != PurePosixPath(name).name or name in {".", ".."}:
        raise ModelLoadError(f"{source} names a model file outside its directory: {name!r}")
    return name


def _load_artifact_dir(files: _Files) -> LoadedModel:
    source = files.label(MANIFEST_FILE)
    try:
        manifest = json.loads(files.read(MANIFEST_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ModelLoadError(f"{source} is not a deploy-modes manifest (no sha256)")
    name = _file_name(manifest.get("model_file"), MODEL_FILE, source)
    model_source = files.label(name)
    if not files.exists(name):
        raise ModelLoadError(f"{model_source} is missing: the artifact is incomplete")
    blob = files.read(name)
    if _sha256(blob) != manifest["sha256"]:
        raise ModelLoadError(
            f"{model_source} does not match the sha256 in its manifest "
            f"({len(blob)} bytes read, {manifest.get('size_bytes', '?')} expected): "
            "the file was modified or truncated; refusing to load it"
        )
    trained_with = manifest.get("sklearn_version")
    pipeline, _ = _unpickle(blob, model_source, str(trained_with) if trained_with else None)
    return LoadedModel(pipeline, manifest, files.where)


def _load_mlflow_dir(files: _Files) -> LoadedModel:
    source = files.label(MLMODEL_FILE)
    try:
        mlmodel = yaml.safe_load(files.read(MLMODEL_FILE)) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source} is not valid YAML: {exc}") from exc
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        raise ModelLoadError(f"{source} has no sklearn flavor: not an sklearn model")
    name = _file_name(flavor.get("pickled_model"), MODEL_FILE, source)
    model_source = files.label(name)
    if not files.exists(name):
        raise ModelLoadError(f"MLflow model file {model_source} is missing")
    blob = files.read(name)
    trained_with = flavor.get("sklearn_version")
    pipeline, _ = _unpickle(blob, model_source, str(trained_with) if trained_with else None)
    manifest = _derived_manifest(blob, trained_with, "mlflow")
    if mlmodel.get("run_id"):
        manifest["run_id"] = mlmodel["run_id"]
    return LoadedModel(pipeline, manifest, files.where)


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
            stacklevel=4,
        )


def _unpickle_hint(exc: Exception, trained_with: str | None) -> str:
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and missing.split(".")[0] != "sklearn":
        return f" Install the package that provides {missing!r} to serve it."
    if trained_with and trained_with != sklearn.__version__:
        return (
            f" It was trained with scikit-learn {trained_with}; install "
            f"scikit-learn=={trained_with} to serve it."
        )
    return (
        " It may come from another scikit-learn version than "
        f"{sklearn.__version__}: serve it with the version that trained it."
    )


def _unpickle(blob: bytes, source: str, trained_with: str | None) -> tuple[Pipeline, str | None]:
    """Return the pipeline and the sklearn version the pickle itself records (if another)."""
    if trained_with is not None:
        _check_version(trained_with, source)
    try:
        # sklearn records its version in each estimator's state and warns on a mismatch;
        # we turn that into our own ModelVersionWarning, which says how to fix it. Every
        # other warning from unpickling is recorded too, so none turns into a crash.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = pickle.loads(blob)  # loading a model is the point
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        hint = _unpickle_hint(exc, trained_with)
        raise ModelLoadError(f"cannot unpickle {source}: {exc}.{hint}") from exc
    except Exception as exc:  # truncated, not a pickle at all, or a broken object state
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


def _fitted(estimator: Any) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except TypeError:  # not an sklearn estimator: nothing to check
        return True
    return True


def _skipped(step: Any) -> bool:
    return step is None or isinstance(step, str)  # "passthrough"


def _as_pipeline(obj: Any, source: str) -> Pipeline:
    if isinstance(obj, Pipeline):
        steps = obj.steps
        if not isinstance(steps[0][1], DictVectorizer):
            raise ModelLoadError(
                f"{source} holds a Pipeline whose first step is not a DictVectorizer"
            )
        pipeline = obj
    elif (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], DictVectorizer)
        and hasattr(obj[1], "predict")
    ):
        pipeline = make_pipeline(obj[0], obj[1])
    else:
        raise ModelLoadError(
            f"{source} does not hold a model: expected an sklearn Pipeline or a "
            f"(DictVectorizer, estimator) tuple, got {type(obj).__name__}"
        )
    if not all(_fitted(step) for _, step in pipeline.steps if not _skipped(step)):
        raise ModelLoadError(f"{source} holds an unfitted model: train it before serving it")
    return pipeline
