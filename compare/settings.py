"""Compare settings (env prefix ``DEPLOY_COMPARE_``); seed, workers and shards are the modes'."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy_modes.compare.rides import MAX_RIDES

__all__ = ["CompareSettings"]


class CompareSettings(BaseSettings):
    """How many rides ``deploy compare`` sends, from where, and where the report goes."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_COMPARE_", extra="ignore")

    rides: int = Field(10_000, ge=1, le=MAX_RIDES)
    """Rides sent through every mode."""

    out: Path = Path("compare-out")  # not compare/: that folder is the harness package
    """Directory for compare.json, .md, .png and logs."""

    input: str | None = None
    """A TLC parquet month to take the rides from (its first ``rides`` valid ones)."""

    concurrency: int = Field(8, ge=1, le=256)
    """Concurrent web clients."""
