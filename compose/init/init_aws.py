"""Prepare the emulated S3 for the batch stack: the bucket and a generated input month.

Runs once inside the batch image (``python3 /opt/deploy-init/init_aws.py ...``)
after the emulator is healthy. Idempotent: an existing bucket or object is kept,
so re-running ``up`` on a live stack changes nothing. Clients come from the project's
``core.storage.aws_client`` (it honours ``AWS_ENDPOINT_URL``). The stream stack creates its
streams with ``deploy stream init`` instead, which waits until each is ACTIVE.
"""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError

from deploy_modes.core.data import parse_month
from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import aws_client, parse_s3


def _say(message: str) -> None:
    print(f"init: {message}", flush=True)


def ensure_bucket(s3: object, bucket: str) -> None:
    """Create ``bucket`` unless it exists."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}  # type: ignore[attr-defined]
    if bucket in existing:
        _say(f"bucket s3://{bucket} exists")
        return
    region = s3.meta.region_name  # type: ignore[attr-defined]
    kwargs = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    s3.create_bucket(Bucket=bucket, **kwargs)  # type: ignore[attr-defined]
    _say(f"created bucket s3://{bucket}")


def put_month(
    uri: str, month: str, rows: int, seed: int, row_group_rows: int | None = None
) -> None:
    """Generate ``month`` (TLC schema) into ``uri`` unless an object is already there."""
    from deploy_modes.core.data import generate_month, write_month

    location = parse_s3(uri)
    s3 = aws_client("s3")
    found = s3.list_objects_v2(Bucket=location.bucket, Prefix=location.key, MaxKeys=1)
    if any(item["Key"] == location.key for item in found.get("Contents", [])):
        _say(f"{uri} exists")
        return
    year, mon = parse_month(month)
    frame = generate_month(year, mon, rows=rows, seed=seed)
    # Smaller row groups give a Dask run several partitions of a small month.
    write_month(frame, uri, **({"row_group_size": row_group_rows} if row_group_rows else {}))
    _say(f"wrote {rows:,} generated rides for {month} to {uri}")


def main(argv: list[str]) -> int:
    """Create what the arguments name; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", action="append", default=[], help="bucket to create")
    parser.add_argument("--month", help="month to generate, YYYY-MM (with --month-uri)")
    parser.add_argument("--month-uri", help="s3:// object to write the generated month to")
    parser.add_argument("--rows", type=int, default=20_000, help="rides in the generated month")
    parser.add_argument(
        "--row-group-rows",
        type=lambda text: int(text) if text else None,  # empty: the writer's default
        default=None,
        help="rows per parquet row group of the generated month",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed for the generated rides")
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= 10_000_000:
        parser.error("--rows must be 1..10000000")
    if args.row_group_rows is not None and args.row_group_rows < 1:
        parser.error("--row-group-rows must be at least 1")
    try:
        if args.month:
            parse_month(args.month)  # a typo fails before anything is created
        buckets = list(args.bucket)
        if args.month_uri:
            buckets.append(parse_s3(args.month_uri).bucket)
        if buckets:
            s3 = aws_client("s3")
            for bucket in dict.fromkeys(buckets):
                ensure_bucket(s3, bucket)
        if args.month and args.month_uri:
            put_month(args.month_uri, args.month, args.rows, args.seed, args.row_group_rows)
    except DeployError as exc:
        print(f"init: error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # the emulator refused or did not answer
        print(f"init: error: {exc}", file=sys.stderr)
        return 1
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
