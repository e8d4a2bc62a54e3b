"""Core settings: where the model and the trip data live (env prefix ``DEPLOY_``)."""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy_modes.core.errors import DeployError

__all__ = ["CoreSettings", "load_settings"]

_S = TypeVar("_S", bound=BaseSettings)


class CoreSettings(BaseSettings):
    """Locations and defaults shared by every mode."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_", extra="ignore")

    model_location: str = "models/ride-duration"
    """Model artifact: a directory, a bare pickle, an MLflow model dir, or an ``s3://`` URI."""

    data_dir: str = "data"
    """Where monthly ``green_tripdata_YYYY-MM.parquet`` files are read and generated: a folder,
    or an ``http(s)://`` URL base (the TLC site's ``.../trip-data/``), read and never written."""

    train_month: str = "2021-01"
    """Month the demo model trains on when none exists yet."""

    val_month: str = "2021-02"
    """Month the demo model is validated on."""

    demo_rows: int = 80_000
    """Rows per generated month (a real green month has about this many)."""

    seed: int = 42
    """Seed for generated data, so every run sees the same rides."""

    runtime: Literal["auto", "local", "compose"] = "auto"
    """Where the mode commands run: compose when Docker answers (auto), local or compose."""

    trust_pickle: bool = False
    """Load pickle models (``DEPLOY_TRUST_PICKLE=1``): a pickle runs any code inside it."""

    trusted_types: str = ""
    """Comma-separated extra types a skops model may hold, e.g. ``sklearn.tree._tree.Tree``."""

    model_sha256: str = ""
    """The model file's expected sha256, given from outside the artifact; empty: unchecked."""

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        # Text, not a Path: a Path folds the "//" of an http(s):// data dir into one slash.
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def model_named(self) -> bool:
        """Return whether the model location was given (option or env), not the default."""
        # A named model must exist; only the default location gets a demo model trained.
        return "model_location" in self.model_fields_set

    @property
    def trusted_type_list(self) -> tuple[str, ...]:
        """Return ``trusted_types`` as a tuple of names."""
        return tuple(name.strip() for name in self.trusted_types.split(",") if name.strip())


def load_settings(kind: type[_S], **overrides: Any) -> _S:
    """Build ``kind`` from the environment and the given overrides (None means not given).

    A bad value is one DeployError naming the variable, never a traceback.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return kind(**given)
    except ValidationError as exc:
        prefix = str(kind.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'.'.join(map(str, e['loc'])).upper()}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise DeployError(f"invalid setting: {problems}") from None
