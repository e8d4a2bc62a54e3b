"""Batch settings (env prefix ``DEPLOY_BATCH_``), read once by the CLI and passed down."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy_modes.batch.intervals import DEFAULT_OUTPUT
from deploy_modes.batch.readers import DEFAULT_CHUNK_ROWS, DEFAULT_PARTITION_ROWS

__all__ = ["BatchSettings"]


class BatchSettings(BaseSettings):
    """Where the batch job reads rides and writes predictions, and how much at a time."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_BATCH_", extra="ignore")

    input: str | None = None
    """Rides: a path/``s3://`` template or a database URL; unset means the data dir's month file."""

    output: str = DEFAULT_OUTPUT
    """Predictions: a ``.parquet`` path/``s3://`` template or a database URL."""

    table: str = "trips"
    """Table to read rides from when the input is a database URL."""

    output_table: str = "predictions"
    """Table to write predictions to when the output is a database URL."""

    taxi_type: str = "green"
    """The ``{taxi_type}`` in templates (the course's ``green``)."""

    window: str | None = None
    """``1h`` or ``1d``: score the hour or day before ``--run-date`` (database inputs)."""

    chunk_rows: int = DEFAULT_CHUNK_ROWS
    """Rows read, scored and written at a time: bounds memory whatever the month's size."""

    partition_rows: int = DEFAULT_PARTITION_ROWS
    """``--engine dask``: rows per task (whole row groups, or a pickup sub-window of SQL)."""
