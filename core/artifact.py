"""The model artifact: a directory with the pipeline in ``skops`` format and a JSON manifest.

:func:`load_model` is the one loader every mode uses. Our artifacts are written with
``skops.io``, whose loader checks every type in the file against a list of trusted ones and
refuses the rest by name, so loading one never runs code. It also accepts what users bring
from the course: a bare pickle of ``(DictVectorizer, estimator)`` (``lin_reg.bin``), an old
artifact's ``model.pkl`` and an MLflow sklearn model directory (``MLmodel`` + ``model.pkl``),
without mlflow installed. Loading a pickle runs any code inside it, so pickles are refused
unless the caller trusts them (``trust_pickle`` / ``DEPLOY_TRUST_PICKLE=1``).

:func:`inspect_model` reads the manifest and checks the hash without deserializing anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import platform
import warnings
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import sklearn
import skops.io as sio
import yaml
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.feature_extraction import DictVectorizer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.core.naming import DURATION, MODEL_NAME
from deploy_modes.core.settings import CoreSettings
from deploy_modes.core.storage import is_s3, list_s3, read_bytes, write_bytes

__all__ = [
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PICKLE_FILE",
    "TREE_TYPES",
    "LoadedModel",
    "ModelVersionWarning",
    "Trust",
    "artifact_exists",
    "inspect_model",
    "load_model",
    "save_model",
]

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.skops"
PICKLE_FILE = "model.pkl"  # artifacts written before skops, and MLflow's default
SKOPS_SUFFIX = ".skops"
_SKOPS_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold
MLMODEL_FILE = "MLmodel"
# Types skops will not trust by default: their node indices are not bounds-checked, so a
# crafted file can crash or read memory at predict. Allow them only for files you trust.
TREE_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


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

    @property
    def target(self) -> str:
        """Return what the model predicts (the manifest's ``features.target``; else duration)."""
        # Course pickles, MLflow models and artifacts from before tips predict durations.
        features = self.manifest.get("features")
        return str(features.get("target", DURATION)) if isinstance(features, dict) else DURATION

    def check_target(self, targets: Collection[str]) -> None:
        """Raise ModelLoadError unless the model predicts one of ``targets``."""
        # A mode that labels its answers (web's duration, batch's column) must never label a
        # tip as a duration: it names what it answers, and anything else stops it at start.
        if self.target not in targets:
            where = self.source or "the model"
            raise ModelLoadError(
                f"{where} predicts {self.target}, but this mode answers {' or '.join(targets)} "
                f"only; serve it with `deploy stream consume --model {self.source or 'DIR'}`, "
                "whose events name the target"
            )


@dataclass(frozen=True)
class Trust:
    """What the caller allows a load to do beyond reading a checked skops file."""

    pickle: bool = False
    """Unpickle pickles (a pickle runs any code inside it when loaded)."""
    types: tuple[str, ...] = ()
    """Extra types to allow in a skops file (e.g. ``sklearn.tree._tree.Tree`` for forests)."""
    sha256: str = ""
    """The model file's expected sha256, from outside the artifact; empty: not checked."""

    @classmethod
    def from_settings(cls, settings: CoreSettings | None = None) -> Trust:
        """Return the trust the environment grants (``DEPLOY_TRUST_PICKLE`` and friends)."""
        settings = settings or CoreSettings()
        return cls(settings.trust_pickle, settings.trusted_type_list, settings.model_sha256)

    def env(self) -> dict[str, str]:
        """Return the ``DEPLOY_*`` variables that grant exactly this trust to a child process."""
        # All three, always: a child must not inherit a wider trust from its parent's env.
        return {
            "DEPLOY_TRUST_PICKLE": "1" if self.pickle else "0",
            "DEPLOY_TRUSTED_TYPES": ",".join(self.types),
            "DEPLOY_MODEL_SHA256": self.sha256,
        }


@dataclass(frozen=True)
class _Blob:
    """A model file's bytes, checked against its manifest but not yet deserialized."""

    data: bytes
    source: str  # the model file, for messages
    where: str  # the location the user gave
    manifest: dict[str, Any]
    trained_with: str | None

    @property
    def is_skops(self) -> bool:
        return self.source.endswith(SKOPS_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(
    pipeline: Pipeline, directory: str | Path, metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``model.skops`` and ``manifest.json`` into ``directory`` and return the manifest.

    The version is derived from the model file's content hash, so retraining on the same data
    with the same code gives the same version.
    """
    blob = _canonical_skops(sio.dumps(pipeline))
    digest = _sha256(blob)
    manifest: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": digest[:12],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(metadata or {}),
        # Integrity fields come last so metadata can never contradict the file.
        "format": "skops",
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


def _canonical_skops(blob: bytes) -> bytes:
    """Return the skops file with stable names, ids and dates, so equal models hash equal.

    skops names objects by their memory address and stamps the current time; renumbering
    both in order of appearance keeps every shared reference and makes the bytes (and so the
    version) a function of the model alone.
    """
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        schema = json.loads(source.read(_SKOPS_SCHEMA))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def renumber(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int) and not isinstance(value, bool):
                        out[key] = ids.setdefault(value, len(ids))
                    elif key == "file" and isinstance(value, str) and value in names:
                        out[key] = files.setdefault(value, f"{len(files)}{Path(value).suffix}")
                    else:
                        out[key] = renumber(value)
                return out
            if isinstance(node, list):
                return [renumber(item) for item in node]
            return node

        names = set(source.namelist()) - {_SKOPS_SCHEMA}
        schema = renumber(schema)
        if set(files) != names:  # a file the schema does not name: keep the original bytes
            return blob
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as target:
            for old, new in sorted(files.items(), key=lambda item: int(Path(item[1]).stem)):
                target.writestr(zipfile.ZipInfo(new, _EPOCH), source.read(old))
            target.writestr(
                zipfile.ZipInfo(_SKOPS_SCHEMA, _EPOCH), json.dumps(schema, indent=2).encode()
            )
    return sink.getvalue()


def artifact_exists(location: str | Path) -> bool:
    """Return whether a local model artifact (any accepted kind) exists at ``location``."""
    path = Path(location)
    if path.is_dir():
        return (path / MANIFEST_FILE).is_file() or (path / MLMODEL_FILE).is_file()
    return path.is_file()


def load_model(location: str | Path, trust: Trust | None = None) -> LoadedModel:
    """Load a model from a local path or ``s3://`` URI, checking its hash, types and version.

    ``trust`` defaults to what the environment grants (:meth:`Trust.from_settings`), so every
    mode, image and the Lambda honour ``DEPLOY_TRUST_PICKLE=1`` without more wiring.
    """
    trust = trust if trust is not None else Trust.from_settings()
    blob = _locate(str(location))
    _check_expected_digest(blob, trust.sha256)
    if blob.is_skops:
        _check_version(blob.trained_with, blob.source)
        pipeline = _as_pipeline(_load_skops(blob, trust.types), blob.source)
        return LoadedModel(pipeline, blob.manifest, blob.where)
    if not trust.pickle:
        raise ModelLoadError(_pickle_refusal(blob.source, str(location)))
    obj, pickled_with = _unpickle(blob.data, blob.source, blob.trained_with)
    manifest = blob.manifest
    if manifest.get("format") == "pickle" and manifest.get("sklearn_version") is None:
        # A bare pickle records its sklearn version only inside; without one it is ours.
        trained_with = pickled_with or sklearn.__version__
        _check_version(trained_with, blob.source)
        manifest = {**manifest, "sklearn_version": trained_with}
    return LoadedModel(_as_pipeline(obj, blob.source), manifest, blob.where)


def inspect_model(location: str | Path, expected_sha256: str = "") -> dict[str, Any]:
    """Return a model's manifest after checking its hash, without deserializing the model."""
    blob = _locate(str(location))
    _check_expected_digest(blob, expected_sha256)
    return {**blob.manifest, "format": blob.manifest.get("format") or _format(blob)}


def _format(blob: _Blob) -> str:
    return "skops" if blob.is_skops else "pickle"


def _pickle_refusal(source: str, location: str) -> str:
    return (
        f"{source} is a pickle, and loading a pickle runs any code inside it: refused. "
        "If you trust where it comes from, pass --trust-pickle (or set DEPLOY_TRUST_PICKLE=1), "
        f"or convert it once: deploy model convert {location} --out DIR --trust-pickle"
    )


def _check_expected_digest(blob: _Blob, expected: str) -> None:
    """Refuse the model unless its file hashes to a digest given from outside the artifact."""
    if not expected:
        return
    wanted = expected.strip().lower()
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        raise ModelLoadError(f"expected model sha256 {expected!r} is not 64 hex digits")
    actual = _sha256(blob.data)
    if actual != wanted:
        raise ModelLoadError(
            f"{blob.source} has sha256 {actual}, not the expected {wanted} "
            "(DEPLOY_MODEL_SHA256 / --model-sha256): refusing to load it"
        )


def _load_skops(blob: _Blob, allowed: tuple[str, ...]) -> Any:
    """Return the object in a skops file, refusing (by name) every type not trusted."""
    try:
        untrusted = sio.get_untrusted_types(data=blob.data)
    except Exception as exc:  # not a zip, a truncated zip, or a broken schema
        raise ModelLoadError(
            f"{blob.source} is not a readable skops file ({type(exc).__name__}: {exc}): "
            "the file is corrupt, truncated or not a model"
        ) from exc
    refused = [name for name in untrusted if name not in allowed]
    if refused:
        names = ",".join(refused)
        raise ModelLoadError(
            f"{blob.source} holds types skops does not trust by default: {names}; if you "
            f"trust this file, allow them with --trust-type or DEPLOY_TRUSTED_TYPES={names}"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = sio.loads(blob.data, trusted=untrusted)
    except Exception as exc:
        hint = _unpickle_hint(exc, blob.trained_with)
        raise ModelLoadError(f"cannot load {blob.source}: {exc}.{hint}") from exc
    if blob.trained_with is None:
        recorded = next(
            (
                w.message.original_sklearn_version
                for w in caught
                if isinstance(w.message, InconsistentVersionWarning)
            ),
            None,
        )
        _check_version(recorded, blob.source)
    return obj


def _locate(where: str) -> _Blob:
    """Return the model file at ``where`` with its manifest, the hash checked."""
    if is_s3(where):
        return _locate_s3(where)
    path = Path(where)
    if path.is_dir():
        files = _Files(
            where, lambda name: _read_local(path / name), lambda name: (path / name).is_file()
        )
        return _locate_dir(files)
    if path.is_file():
        return _bare_file(_read_local(path), str(path))
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


def _locate_s3(uri: str) -> _Blob:
    try:
        keys = set(list_s3(uri))
    except DeployError as exc:
        raise ModelLoadError(str(exc)) from exc
    if not keys or keys == {""}:
        # Not a prefix: a single object, i.e. a bare model file.
        try:
            blob = read_bytes(uri)
        except DeployError as exc:
            raise ModelLoadError(f"no model at {uri}: {exc}") from exc
        return _bare_file(blob, uri)

    def read(name: str) -> bytes:
        try:
            return read_bytes(f"{uri.rstrip('/')}/{name}")
        except DeployError as exc:
            raise ModelLoadError(str(exc)) from exc

    return _locate_dir(_Files(uri, read, lambda name: name in keys))


def _locate_dir(files: _Files) -> _Blob:
    if files.exists(MANIFEST_FILE):
        return _artifact_dir(files)
    if files.exists(MLMODEL_FILE):
        return _mlflow_dir(files)
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


def _artifact_dir(files: _Files) -> _Blob:
    source = files.label(MANIFEST_FILE)
    try:
        manifest = json.loads(files.read(MANIFEST_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ModelLoadError(f"{source} is not a deploy-modes manifest (no sha256)")
    # Artifacts written before skops name no file and hold model.pkl.
    name = _file_name(manifest.get("model_file"), PICKLE_FILE, source)
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
    return _Blob(blob, model_source, files.where, manifest, str(trained_with or "") or None)


def _mlflow_dir(files: _Files) -> _Blob:
    source = files.label(MLMODEL_FILE)
    try:
        mlmodel = yaml.safe_load(files.read(MLMODEL_FILE)) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source} is not valid YAML: {exc}") from exc
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        raise ModelLoadError(f"{source} has no sklearn flavor: not an sklearn model")
    name = _file_name(flavor.get("pickled_model"), PICKLE_FILE, source)
    model_source = files.label(name)
    if not files.exists(name):
        raise ModelLoadError(f"MLflow model file {model_source} is missing")
    blob = files.read(name)
    trained_with = flavor.get("sklearn_version")
    manifest = _derived_manifest(blob, trained_with, "mlflow")
    if mlmodel.get("run_id"):
        manifest["run_id"] = mlmodel["run_id"]
    return _Blob(blob, model_source, files.where, manifest, str(trained_with or "") or None)


def _bare_file(blob: bytes, source: str) -> _Blob:
    kind = "skops" if source.endswith(SKOPS_SUFFIX) else "pickle"
    return _Blob(blob, source, source, _derived_manifest(blob, None, kind), None)


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


def _unpickle(blob: bytes, source: str, trained_with: str | None) -> tuple[Any, str | None]:
    """Return the unpickled object and the sklearn version the pickle itself records."""
    if trained_with is not None:
        _check_version(trained_with, source)
    try:
        # sklearn records its version in each estimator's state and warns on a mismatch;
        # we turn that into our own ModelVersionWarning, which says how to fix it. Every
        # other warning from unpickling is recorded too, so none turns into a crash.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = pickle.loads(blob)  # only reached when the caller trusts pickles
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
    return obj, pickled_with


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
