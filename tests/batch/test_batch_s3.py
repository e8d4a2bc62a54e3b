"""Parquet in and out of S3 through a real moto server process over HTTP."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from deploy_modes.core.storage import aws_client
from deploy_modes.launch.emulator import Emulator

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(moto_server: Emulator) -> str:
    """Return a fresh bucket on the moto server."""
    name = f"batch-{uuid.uuid4().hex[:10]}"
    aws_client("s3", endpoint=moto_server.url).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return name


def test_s3_in_s3_out_with_the_endpoint_from_env(
    invoke: Callable[..., object], march_file: Path, bucket: str, moto_server: Emulator
) -> None:
    s3 = aws_client("s3", endpoint=moto_server.url)
    s3.upload_file(str(march_file), bucket, "in/green_tripdata_2021-03.parquet")
    env = {"AWS_ENDPOINT_URL": moto_server.url}
    args = [
        "--month",
        "2021-03",
        "--input",
        f"s3://{bucket}/in/green_tripdata_{{year:04d}}-{{month:02d}}.parquet",
        "--output",
        f"s3://{bucket}/out/taxi_type={{taxi_type}}/year={{year:04d}}/month={{month:02d}}/"
        "{model_version}.parquet",
    ]
    first = invoke(*args, env=env)
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    second = invoke(*args, env=env)  # a rerun replaces the one object
    assert second.exit_code == 0, second.output  # type: ignore[attr-defined]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]]
    assert len(keys) == 1
    assert keys[0].startswith("out/taxi_type=green/year=2021/month=03/")
    body = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    frame = pd.read_parquet(io.BytesIO(body))
    assert frame["ride_id"].is_unique
    assert 0 < len(frame) < 3_000


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("input-object", "S3 object does not exist"),
        ("input-bucket", "does not exist"),
        ("output-bucket", "S3 bucket does not exist"),
    ],
)
def test_missing_s3_objects_and_buckets_are_one_line_errors(
    invoke: Callable[..., object],
    march_file: Path,
    bucket: str,
    moto_server: Emulator,
    where: str,
    needle: str,
    tmp_path: Path,
) -> None:
    aws_client("s3", endpoint=moto_server.url).upload_file(str(march_file), bucket, "m.parquet")
    source = {
        "input-object": f"s3://{bucket}/missing.parquet",
        "input-bucket": "s3://no-such-bucket-here/m.parquet",
        "output-bucket": f"s3://{bucket}/m.parquet",
    }[where]
    target = (
        "s3://no-such-bucket-here/out.parquet"
        if where == "output-bucket"
        else str(tmp_path / "out.parquet")
    )
    result = invoke(
        "--month", "2021-03", "--input", source, "--output", target,
        env={"AWS_ENDPOINT_URL": moto_server.url},
    )  # fmt: skip
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    assert needle in " ".join(output.split())
    assert not (tmp_path / "out.parquet").exists()
