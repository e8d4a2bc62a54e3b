"""Storage: local paths and ``s3://`` URIs behind one small module."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.storage import (
    S3Location,
    aws_client,
    aws_error_code,
    create_temp,
    endpoint_url,
    http_exists,
    is_s3,
    join_location,
    list_s3,
    local_file,
    parse_s3,
    read_bytes,
    s3_error,
    write_bytes,
)


def test_parse_s3() -> None:
    assert parse_s3("s3://bucket/a/b.parquet") == S3Location("bucket", "a/b.parquet")
    assert str(parse_s3("s3://bucket/a")) == "s3://bucket/a"
    assert parse_s3("s3://bucket") == S3Location("bucket", "")
    assert is_s3("s3://b/k") and not is_s3("data/s3://x") and not is_s3(Path("s3:/b"))


@pytest.mark.parametrize("uri", ["s3:///key", "http://bucket/key", "bucket/key"])
def test_parse_s3_refuses_non_s3(uri: str) -> None:
    with pytest.raises(DeployError, match="not an S3 URI"):
        parse_s3(uri)


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINESIS_ENDPOINT_URL", raising=False)
    assert endpoint_url("kinesis") is None  # boto3 then reads AWS_ENDPOINT_URL itself
    monkeypatch.setenv("KINESIS_ENDPOINT_URL", "http://course:4566")
    assert endpoint_url("kinesis") == "http://course:4566"
    assert endpoint_url("kinesis", "http://explicit:1") == "http://explicit:1"
    assert endpoint_url("dynamodb") is None


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "file.bin"
    write_bytes(target, b"one")
    write_bytes(target, b"two")
    assert read_bytes(target) == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_written_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    # mkstemp makes 0600 files; a container's non-root user must be able to read artifacts.
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "model.pkl", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model.pkl").stat().st_mode) == 0o644


def test_writing_never_touches_the_process_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Flipping the umask to read it races every other thread that creates a file meanwhile.
    old = os.umask(0o027)
    try:

        def refuse(_mask: int) -> int:
            raise AssertionError("os.umask called while writing")

        monkeypatch.setattr(os, "umask", refuse)
        write_bytes(tmp_path / "a" / "model.pkl", b"x")
        fd, path = create_temp(tmp_path, ".out.", ".tmp")
        os.close(fd)
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "model.pkl").stat().st_mode) == 0o640
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o640
    assert Path(path).name.startswith(".out.") and path.endswith(".tmp")


def _client_error(code: str, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, operation)


@pytest.mark.parametrize(
    ("code", "uri", "message"),
    [
        ("NoSuchKey", "s3://b/k", "S3 object does not exist: s3://b/k"),
        ("404", "s3://b/k", "S3 object does not exist: s3://b/k"),
        ("NoSuchBucket", "s3://b/k", "S3 bucket does not exist: s3://b"),
        ("404", "s3://b", "S3 bucket does not exist: s3://b"),  # HEAD on a bucket
        ("AccessDenied", "s3://b/k", "S3 request for s3://b/k failed: An error occurred"),
    ],
)
def test_one_mapper_reads_botocore_error_codes(code: str, uri: str, message: str) -> None:
    error = s3_error(_client_error(code), uri, DataError)
    assert isinstance(error, DataError) and str(error).startswith(message)
    assert aws_error_code(_client_error(code)) == code


def test_only_a_client_error_has_an_s3_code() -> None:
    # A message that merely mentions a code is not that error: no guessing from text.
    assert aws_error_code(RuntimeError("NoSuchKey")) is None
    assert str(s3_error(RuntimeError("NoSuchKey"), "s3://b/k")).startswith("S3 request for")


def test_write_onto_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(DeployError, match="cannot write"):
        write_bytes(tmp_path / "dir", b"x")
    assert [p.name for p in (tmp_path).iterdir()] == ["dir"]


def test_read_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="file does not exist"):
        read_bytes(tmp_path / "missing")


@pytest.mark.integration
def test_s3_round_trip_on_a_real_moto_server(moto_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    bucket = f"store-{uuid.uuid4().hex[:8]}"
    aws_client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    write_bytes(f"s3://{bucket}/p/a.bin", b"A")
    write_bytes(f"s3://{bucket}/p/sub/b.bin", b"B")
    write_bytes(f"s3://{bucket}/pp/c.bin", b"C")
    assert read_bytes(f"s3://{bucket}/p/a.bin") == b"A"
    assert sorted(list_s3(f"s3://{bucket}/p")) == ["a.bin", "sub/b.bin"]
    assert list_s3(f"s3://{bucket}/nothing") == []
    with pytest.raises(DeployError, match="S3 object does not exist"):
        read_bytes(f"s3://{bucket}/p/missing.bin")
    with pytest.raises(DeployError, match="S3 bucket does not exist"):
        write_bytes(f"s3://{bucket}-gone/x", b"x")


def test_local_file_names_what_is_wrong_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "f.parquet").write_bytes(b"x")
    assert local_file(str(tmp_path / "f.parquet"), "input file") == tmp_path / "f.parquet"
    with pytest.raises(DataError, match=r"^input file is a directory, not a file: "):
        local_file(tmp_path, "input file")
    with pytest.raises(DataError, match=r"^input file does not exist: .*nope\.parquet$"):
        local_file(tmp_path / "nope.parquet", "input file")


def test_join_location_keeps_a_url_whole() -> None:
    """A Path would fold ``https://`` into ``https:/``."""
    name = "green_tripdata_2021-03.parquet"
    for base in ("https://host/trip-data", "https://host/trip-data/"):
        assert join_location(base, name) == f"https://host/trip-data/{name}"
    assert join_location(Path("data"), name) == f"data/{name}"


def test_http_exists_asks_without_downloading(tlc_site: tuple[str, Path]) -> None:
    from deploy_modes.launch.processes import free_port

    base, _ = tlc_site
    assert http_exists(f"{base}/green_tripdata_2021-03.parquet")
    assert not http_exists(f"{base}/green_tripdata_1999-03.parquet")  # a 404 is an answer
    nobody = f"http://127.0.0.1:{free_port()}/green_tripdata_2021-03.parquet"
    with pytest.raises(DataError, match=rf"^cannot download {nobody}: .*refused"):
        http_exists(nobody)  # no answer at all is an error, never "missing"
