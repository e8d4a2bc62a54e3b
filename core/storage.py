"""Bytes in and out of local paths and ``s3://`` URIs; the only place that builds AWS clients.

``http(s)://`` URLs (the TLC site's monthly files) can be read, never written.

Endpoints honour ``AWS_ENDPOINT_URL`` (and boto3's per-service ``AWS_ENDPOINT_URL_<SERVICE>``),
plus the course's ``KINESIS_ENDPOINT_URL`` and ``S3_ENDPOINT_URL``, so the same code talks to
the local emulator and to real AWS.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from deploy_modes.core.errors import DataError, DeployError

__all__ = [
    "S3Location",
    "aws_client",
    "aws_error_code",
    "create_temp",
    "download",
    "emulator_keys",
    "endpoint_url",
    "fsync_folder",
    "http_exists",
    "is_http",
    "is_s3",
    "join_location",
    "list_s3",
    "local_file",
    "os_cause",
    "parse_s3",
    "read_bytes",
    "s3_error",
    "write_bytes",
]

_COURSE_ENDPOINT_VARS = {"kinesis": "KINESIS_ENDPOINT_URL", "s3": "S3_ENDPOINT_URL"}
_DEFAULT_REGION = "eu-west-1"
# What S3 answers for a missing object: GetObject says NoSuchKey, HEAD (head_object, and so
# download_file) has no body and says only its status.
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
_TEMP_ATTEMPTS = 100
HTTP_TIMEOUT = 60.0  # seconds without a byte before a download fails (not the whole transfer)
_COPY_BYTES = 1 << 20
_MISSING_HTTP_CODES = frozenset({404, 410})


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


def is_http(uri: str | os.PathLike[str]) -> bool:
    """Return whether ``uri`` is an ``http://`` or ``https://`` URL."""
    return str(uri).lower().startswith(("http://", "https://"))


def join_location(base: str | os.PathLike[str], name: str) -> str:
    """Return ``name`` inside ``base``: a folder, or an http(s) URL base (``.../trip-data/``)."""
    if is_http(base):
        return f"{str(base).rstrip('/')}/{name}"  # a Path would fold "https://" into "https:/"
    return str(Path(base) / name)


def parse_s3(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` or raise a clear error."""
    try:
        parsed = urlparse(uri)
    except ValueError as exc:  # e.g. a stray "[" reads as an IPv6 host: "Invalid IPv6 URL"
        raise DeployError(f"not an S3 URI (expected s3://bucket/key): {uri!r} ({exc})") from None
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


def emulator_keys() -> dict[str, str]:
    """Return the dummy keys an AWS emulator accepts (boto3 signs nothing without some keys)."""
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


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


def aws_error_code(exc: BaseException) -> str | None:
    """Return the error code of a botocore ``ClientError`` (any service), else None."""
    try:
        from botocore.exceptions import ClientError
    except ImportError:  # no botocore installed: nothing raised here can be a ClientError
        return None
    if not isinstance(exc, ClientError):
        return None
    return str(exc.response.get("Error", {}).get("Code", "")) or None


def s3_error(exc: BaseException, uri: str, error: type[DeployError] = DeployError) -> DeployError:
    """Return the one-line ``error`` that says what a failed S3 call on ``uri`` means.

    For a bare ``s3://bucket`` a missing-object code means the bucket: a HEAD on a bucket
    answers only ``404``.
    """
    code = aws_error_code(exc)
    loc = parse_s3(uri) if is_s3(uri) else None
    if code in _MISSING_BUCKET_CODES or (code in _MISSING_OBJECT_CODES and loc and not loc.key):
        return error(f"S3 bucket does not exist: s3://{loc.bucket if loc else uri}")
    if code in _MISSING_OBJECT_CODES:
        return error(f"S3 object does not exist: {uri}")
    detail = " ".join(str(exc).split())  # botocore messages may span lines: keep one
    return error(f"S3 request for {uri} failed: {detail}")


def os_cause(exc: OSError) -> str:
    """Return an OSError's cause as one line: the errno text, else its message."""
    return exc.strerror or " ".join(str(exc).split()) or type(exc).__name__


def local_file(path: str | os.PathLike[str], what: str) -> Path:
    """Return ``path`` if it is an existing file; else a DataError saying what ``what`` is."""
    local = Path(path)
    if local.is_dir():
        raise DataError(f"{what} is a directory, not a file: {local}")
    if not local.is_file():
        raise DataError(f"{what} does not exist: {local}")
    return local


def read_bytes(uri: str | os.PathLike[str], client: Any = None) -> bytes:
    """Return the whole content of a local file or an S3 object."""
    if is_s3(uri):
        loc = parse_s3(str(uri))
        s3 = client or aws_client("s3")
        try:
            return s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
        except Exception as exc:
            raise s3_error(exc, str(uri)) from exc
    path = Path(uri)
    if not path.is_file():
        raise DeployError(f"file does not exist: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror or exc}") from exc


def create_temp(directory: str | os.PathLike[str], prefix: str, suffix: str) -> tuple[int, str]:
    """Create a new hidden temp file in ``directory``; return its open descriptor and path.

    Unlike ``mkstemp`` (always 0600) the file is created 0666 and the kernel applies the
    umask, so it gets the mode ``open()`` would give, without reading or changing the
    process-wide umask (which other threads share). A container's non-root user can then read
    every artifact and output we write atomically.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_ATTEMPTS):
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue  # another writer drew the same name: draw again, as mkstemp does
    raise DeployError(
        f"cannot write in {directory}: no free temp file name in {_TEMP_ATTEMPTS} tries"
    )


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries to disk: a file renamed into it survives a crash too."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(uri: str | os.PathLike[str], data: bytes, client: Any = None) -> None:
    """Write ``data`` atomically: one S3 put, or a temp file renamed into place."""
    if is_s3(uri):
        loc = parse_s3(str(uri))
        s3 = client or aws_client("s3")
        try:
            s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=data)
        except Exception as exc:
            raise s3_error(exc, str(uri)) from exc
        return
    path = Path(uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = create_temp(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (FileExistsError, NotADirectoryError) as exc:
        raise DeployError(f"cannot write {path}: {exc.filename} is not a directory") from exc
    except OSError as exc:  # no permission, read-only file system, ...
        raise DeployError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
        raise s3_error(exc, uri) from exc
    return keys


@contextlib.contextmanager
def _http_errors(url: str) -> Iterator[None]:
    """Turn whatever a request for ``url`` raises into one DataError line naming the URL."""
    import http.client
    import urllib.error

    try:
        yield
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the open response: an unclosed socket otherwise
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {exc.reason}") from None
    except (http.client.HTTPException, OSError, ValueError) as exc:
        # IncompleteRead (a cut chunked transfer) is an HTTPException, not an OSError.
        raise DataError(f"cannot download {url}: {type(exc).__name__}: {exc}") from None


def download(url: str, sink: BinaryIO, timeout: float = HTTP_TIMEOUT) -> int:
    """Copy an http(s) URL's body into ``sink``; return its size or raise one DataError line."""
    import shutil
    import urllib.request

    start = sink.tell()
    # A user-given URL: any failure is one line naming it.
    with _http_errors(url), urllib.request.urlopen(url, timeout=timeout) as response:
        promised = response.headers.get("Content-Length")
        shutil.copyfileobj(response, sink, _COPY_BYTES)
    got = sink.tell() - start
    # http.client returns a short body quietly when the server closes early: never pass a
    # truncated file on as if whole.
    if promised is not None and promised.isdigit() and got != int(promised):
        raise DataError(f"cannot download {url}: got {got:,} of {int(promised):,} bytes (cut off)")
    return got


def http_exists(url: str, timeout: float = HTTP_TIMEOUT) -> bool:
    """Return whether an http(s) URL answers a HEAD (False: 404 or 410); else one DataError line.

    No body is read: checking that a month is there costs nothing before a download starts.
    """
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD")
    with _http_errors(url):
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code not in _MISSING_HTTP_CODES:
                raise
            exc.close()
            return False
