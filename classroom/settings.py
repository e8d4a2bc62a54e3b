"""Classroom settings (env prefix ``DEPLOY_CLASSROOM_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MAX_RATE", "ClassroomSettings"]

MAX_RATE = 50.0  # the highest base rate, rides per second (a spike is 10 times it)


class ClassroomSettings(BaseSettings):
    """Where the page is served, how fast rides come, how often the batch job runs."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_CLASSROOM_", extra="ignore")

    port: int = Field(8800, ge=1, le=65535)
    """Port of the page on 127.0.0.1."""

    rate: float = Field(20.0, gt=0.0, le=MAX_RATE)
    """Rides per second at the start (the page changes it)."""

    batch_interval: float = Field(15.0, ge=2.0, le=3600.0)
    """Seconds between two batch runs."""

    web_workers: int = Field(2, ge=1, le=16)
    """gunicorn workers at the start (the scale scenario adds one)."""

    consumers: int = Field(2, ge=1, le=8)
    """Stream consumers at the start (the scale scenario adds one)."""

    pool: int = Field(5_000, ge=100, le=100_000)
    """Distinct generated rides, reused in turn under new ride ids."""
