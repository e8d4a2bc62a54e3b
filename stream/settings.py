"""Stream settings: stream names, endpoint, checkpoints (env prefix ``DEPLOY_STREAM_``)."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_SHARDS", "MAX_SHARDS", "StreamSettings"]

DEFAULT_SHARDS = 2
# One range for every --shards (deploy stream, stream init, compare): what the local
# emulator and the compare harness are run with; real AWS allows more, on request.
MAX_SHARDS = 16


class StreamSettings(BaseSettings):
    """Everything the consumer and the stream commands need, read once at the edge."""

    # populate_by_name: code passes ``endpoint_url=``; the environment has three names for it.
    model_config = SettingsConfigDict(
        env_prefix="DEPLOY_STREAM_", extra="ignore", populate_by_name=True
    )

    input_stream: str = "ride_events"
    """Kinesis stream the rides arrive on."""

    output_stream: str = "ride_predictions"
    """Kinesis stream the prediction events go to (partition key = ride_id)."""

    dlq_stream: str = "ride_events_dlq"
    """Dead-letter stream for poison records (error + original payload)."""

    shards: int = Field(DEFAULT_SHARDS, ge=1, le=MAX_SHARDS)
    """Shard count used when ``deploy stream init`` creates the streams."""

    endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "DEPLOY_STREAM_ENDPOINT_URL", "KINESIS_ENDPOINT_URL", "AWS_ENDPOINT_URL"
        ),
    )
    """Kinesis/DynamoDB endpoint (the emulator), from the first of DEPLOY_STREAM_ENDPOINT_URL,
    KINESIS_ENDPOINT_URL (the course's) and AWS_ENDPOINT_URL that is set; unset: real AWS."""

    consumer_name: str = "default"
    """Name of this consumer; each name keeps its own checkpoints (fan-out)."""

    emulator_keys: bool = False
    """Sign with an emulator's dummy keys (a local emulator accepts any; AWS needs real ones)."""

    checkpoint_store: Literal["sqlite", "dynamodb"] = "sqlite"
    """Where shard checkpoints live: a local SQLite file, or a DynamoDB table in AWS."""

    checkpoint_path: Path = Path(".deploy/stream/checkpoints.sqlite")
    """SQLite checkpoint file (checkpoint_store=sqlite)."""

    checkpoint_table: str = "deploy_stream_checkpoints"
    """DynamoDB checkpoint table, created on first use (checkpoint_store=dynamodb)."""

    start_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    """Where a shard without a checkpoint starts: the oldest record, or those since the start."""

    batch_size: int = Field(500, ge=1, le=10_000)
    """Most records in one prediction batch, read across all shards (split evenly); a crash
    repeats at most this many rides."""

    poll_interval: float = Field(0.2, ge=0.0, le=60.0)
    """Seconds to wait when every shard is empty before polling again."""

    shard_refresh: float = Field(30.0, ge=1.0)
    """Seconds between shard discoveries (picks up resharding)."""

    put_attempts: int = Field(8, ge=1, le=100)
    """PutRecords attempts for the entries a call reported as failed (throttling and connection
    errors are retried by botocore itself) before the consumer gives up on a batch."""

    max_record_bytes: int = Field(64 * 1024, ge=256, le=1024 * 1024)
    """Largest input record accepted; bigger ones are poison (a ride is ~100 bytes)."""

    startup_timeout: float = Field(30.0, ge=0.0, le=3600.0)
    """Seconds ``consume`` waits at start for the input stream to answer before it gives up
    with an error; once running, outages are retried with backoff for as long as they last."""

    group: bool = True
    """Share the shards with every other consumer of the same name through leases (a
    consumer group, as the Kinesis Client Library does); off: this consumer reads every
    shard, children of a reshard at once beside their parents (no per-key order across it)."""

    lease_timeout: float = Field(10.0, ge=1.0, le=600.0)
    """Seconds after which a lease its owner stopped renewing is taken over (group only)."""

    lease_path: Path | None = None
    """SQLite lease file shared by the consumers of one host (group, checkpoint_store=sqlite);
    unset: ``leases.sqlite`` beside the checkpoint file, so leases and checkpoints move together."""

    lease_table: str = "deploy_stream_leases"
    """DynamoDB lease table, created on first use (group, checkpoint_store=dynamodb)."""

    record: bool = True
    """Record a local consumer in ``.deploy/processes`` with a log of what it prints, for
    ``deploy status`` and ``deploy logs stream``; off in the container, whose logs docker keeps."""

    @property
    def lease_file(self) -> Path:
        """Return the SQLite lease file: ``lease_path``, or the one beside the checkpoints."""
        return self.lease_path or self.checkpoint_path.parent / "leases.sqlite"
