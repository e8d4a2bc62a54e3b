"""Batch settings (env prefix ``DEPLOY_BATCH_``), read once by the CLI and passed down."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy_modes.batch.engines import Engine
from deploy_modes.batch.intervals import DEFAULT_OUTPUT
from deploy_modes.batch.readers import DEFAULT_CHUNK_ROWS, DEFAULT_PARTITION_ROWS

__all__ = ["BatchSettings"]


class BatchSettings(BaseSettings):
    """Where the batch job reads rides and writes predictions, and how much at a time."""

    # populate_by_name: the CLI passes ``first=``/``last=``; the environment says FROM/TO.
    model_config = SettingsConfigDict(
        env_prefix="DEPLOY_BATCH_", extra="ignore", populate_by_name=True
    )

    month: str | None = None
    """Score this month (``YYYY-MM``)."""

    run_date: str | None = None
    """Score the month (or window) before this date, as the course's ``get_paths``."""

    first: str | None = Field(None, validation_alias=AliasChoices("DEPLOY_BATCH_FROM"))
    """Backfill from this month (``DEPLOY_BATCH_FROM``)."""

    last: str | None = Field(None, validation_alias=AliasChoices("DEPLOY_BATCH_TO"))
    """Backfill to this month, included (``DEPLOY_BATCH_TO``)."""

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

    engine: Engine = Engine.local
    """``local`` (this process) or ``dask`` (a Dask cluster)."""

    workers: int | None = Field(None, ge=1, le=256)
    """``--engine dask``: start a local cluster of this many worker processes for the run."""

    scheduler: str | None = Field(
        None, validation_alias=AliasChoices("scheduler", "DEPLOY_DASK_SCHEDULER")
    )
    """``--engine dask``: use the existing cluster at this address (``tcp://host:8786``)."""

    output_parts: bool = False
    """``--engine dask``: write a folder of parquet parts (``part-00000.parquet``, ...)."""
