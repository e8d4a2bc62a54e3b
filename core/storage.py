"""Bytes in and out of local paths and ``s3://`` URIs; the only place that builds AWS clients.

Endpoints honour ``AWS_ENDPOINT_URL`` (and boto3's per-service ``AWS_ENDPOINT_URL_<SERVICE>``),
plus the course's ``KINESIS_ENDPOINT_URL`` and ``S3_ENDPOINT_URL``, so the same code talks to
the local emulator and to real AWS.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deploy_modes.core.errors import DeployError

__all__ = [
    "S3Location",
    "aws_client",
    "endpoint_url",
    "is_s3",
    "list_s3",
    "open_permissions",
    "parse_s3",
    "read_bytes",
    "write_bytes",
]

_COURSE_ENDPOINT_VARS = {"kinesis": "KINESIS_ENDPOINT_URL", "s3": "S3_ENDPOINT_URL"}
_DEFAULT_REGION = "eu-west-1"


@dataclass(frozen=True)
class S3Location:
    """A bucket and key parsed from an ``s3://bucket/key`` URI."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_s3(uri: str | os.PathLike[str]) -> bool:
    """Return whether ``uri`` names an S3 object or prefix."""
    return str(uri).startswith("s3://")


def parse_s3(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` or raise a clear error."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DeployError(f"not an S3 URI (expected s3://bucket/key): {uri!r}")
    return S3Location(parsed.netloc, parsed.path.lstrip("/"))


def endpoint_url(service: str, override: str | None = None) -> str | None:
    """Return the endpoint to use for ``service``: explicit, course variable, or boto3's own."""
    if override:
        return override
    course_var = _COURSE_ENDPOINT_VARS.get(service)
    if course_var and os.environ.get(course_var):
        return os.environ[course_var]
    # boto3 itself reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>; None defers to it.
    return None


def aws_client(service: str, endpoint: str | None = None, **kwargs: Any) -> Any:
    """Build a boto3 client for ``service`` honouring endpoint overrides and a default region."""
    try:
        import boto3
    except ImportError as exc:  # the web image, say, has no boto3
        raise DeployError(
            f"talking to {service} needs boto3: pip install 'deploy-modes[aws]'"
        ) from exc
    region = (
        kwargs.pop("region_name", None)
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or _DEFAULT_REGION
    )
    return boto3.client(
        service, endpoint_url=endpoint_url(service, endpoint), region_name=region, **kwargs
    )


def _s3_error(exc: Exception, uri: str) -> DeployError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    if code in {"NoSuchBucket"}:
        return DeployError(f"S3 bucket does not exist: {uri}")
    if code in {"NoSuchKey", "404", "NotFound"}:
        return DeployError(f"S3 object does not exist: {uri}")
    return DeployError(f"S3 request for {uri} failed: {exc}")


def read_bytes(uri: str | os.PathLike[str], client: Any = None) -> bytes:
    """Return the whole content of a local file or an S3 object."""
    if is_s3(uri):
        loc = parse_s3(str(uri))
        s3 = client or aws_client("s3")
        try:
            return s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except Exception as exc:
            raise _s3_error(exc, str(uri)) from exc
    path = Path(uri)
    if not path.is_file():
        raise DeployError(f"file does not exist: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror or exc}") from exc


def open_permissions(path: str | os.PathLike[str]) -> None:
    """Give a ``mkstemp`` file (always 0600) the mode ``open()`` would have: 0666 less umask.

    Without it every artifact and output we write atomically is unreadable by other users,
    such as the non-root user of a container that mounts it.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_bytes(uri: str | os.PathLike[str], data: bytes, client: Any = None) -> None:
    """Write ``data`` atomically: one S3 put, or a temp file renamed into place."""
    if is_s3(uri):
        loc = parse_s3(str(uri))
        s3 = client or aws_client("s3")
        try:
            s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data)
        except Exception as exc:
            raise _s3_error(exc, str(uri)) from exc
        return
    path = Path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (FileExistsError, NotADirectoryError) as exc:
        raise DeployError(f"cannot write {path}: {exc.filename} is not a directory") from exc
    except OSError as exc:  # no permission, read-only file system, ...
        raise DeployError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        open_permissions(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # disk full, or the target is a directory
        Path(tmp).unlink(missing_ok=True)
        raise DeployError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_s3(uri: str, client: Any = None) -> list[str]:
    """Return the keys (relative to the prefix) of every object under an ``s3://`` prefix."""
    loc = parse_s3(uri)
    s3 = client or aws_client("s3")
    prefix = loc.key.rstrip("/") + "/" if loc.key else ""
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            keys.extend(obj["Key"][len(prefix) :] for obj in page.get("Contents", []))
    except Exception as exc:
        raise _s3_error(exc, uri) from exc
    return keys
