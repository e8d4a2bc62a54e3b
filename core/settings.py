"""Core settings: where the model and the trip data live (env prefix ``DEPLOY_``)."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CoreSettings"]


class CoreSettings(BaseSettings):
    """Locations and defaults shared by every mode."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_", extra="ignore")

    model_location: str = "models/ride-duration"
    """Model artifact: a directory, a bare pickle, an MLflow model dir, or an ``s3://`` URI."""

    data_dir: Path = Path("data")
    """Where monthly ``green_tripdata_YYYY-MM.parquet`` files are read and generated."""

    train_month: str = "2021-01"
    """Month the demo model trains on when none exists yet."""

    val_month: str = "2021-02"
    """Month the demo model is validated on."""

    demo_rows: int = 80_000
    """Rows per generated month (a real green month has about this many)."""

    seed: int = 42
    """Seed for generated data, so every run sees the same rides."""

    trust_pickle: bool = False
    """Load pickle models (``DEPLOY_TRUST_PICKLE=1``): a pickle runs any code inside it."""

    trusted_types: str = ""
    """Comma-separated extra types a skops model may hold, e.g. ``sklearn.tree._tree.Tree``."""

    model_sha256: str = ""
    """The model file's expected sha256, given from outside the artifact; empty: unchecked."""

    @property
    def trusted_type_list(self) -> tuple[str, ...]:
        """Return ``trusted_types`` as a tuple of names."""
        return tuple(name.strip() for name in self.trusted_types.split(",") if name.strip())
