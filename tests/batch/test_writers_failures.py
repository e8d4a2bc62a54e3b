"""Writers' failure paths, each provoked for real: one ``error:`` line, exit 1, old output intact.

A read-only or full file system is a real mount (a read-only bind mount, a tiny tmpfs) made in a
private mount namespace (``unshare --mount``) around one ``deploy batch`` process: root ignores
file modes, so chmod proves nothing here or in CI, and the namespace's mounts vanish with the
process whatever happens. Without the privilege to mount the tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from deploy_modes.batch import run_interval
from deploy_modes.core.scoring import ModelService

Invoke = Callable[..., object]
RunDeploy = Callable[..., subprocess.CompletedProcess[str]]
PREDICTIONS = "predictions"


def _deploy() -> str:
    return str(Path(sys.executable).parent / "deploy")


def _one_error_line(stderr: str) -> str:
    """Return the single ``error:`` line of a failed run, asserting there is no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def _in_private_mounts(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) in a private mount namespace; fail (not skip) if one cannot be made."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to mount a read-only or full file system")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(f"cannot make a private mount namespace (run as root): {probe.stderr.strip()}")
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _batch_args(model_dir: Path, march_file: Path, output: str) -> str:
    args = [_deploy(), "batch", "--runtime", "local", "--model", str(model_dir)]
    args += ["--month", "2021-03", "--input", str(march_file), "--output", output]
    return shlex.join(args)


@pytest.fixture
def old_parquet(tmp_path: Path, march_file: Path, model_service: ModelService) -> Path:
    """Return a good earlier output, written by a real run, in ``tmp_path/out``."""
    path = tmp_path / "out" / "predictions.parquet"
    run_interval(
        "2021-03",
        model=model_service,
        say=lambda _m: None,
        input=str(march_file),
        output=str(path),
    )
    assert path.stat().st_size > 0
    return path


def test_read_only_file_system_is_one_error_line_and_the_old_output_stays(
    old_parquet: Path, march_file: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = old_parquet.parent
    before = old_parquet.read_bytes()
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    script = f"{mount} && exec {_batch_args(model_dir, march_file, str(old_parquet))}"
    result = _in_private_mounts(script, tmp_path)
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line == f"error: cannot write {old_parquet}: Read-only file system"
    assert old_parquet.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [old_parquet.name]


def test_full_disk_is_one_error_line_no_partial_file_and_the_old_output_stays(
    old_parquet: Path, march_file: Path, model_dir: Path, tmp_path: Path
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    target = disk / old_parquet.name
    listing = tmp_path / "listing.txt"
    # Room for the old output and a little more, not for a second copy of it.
    size_kib = old_parquet.stat().st_size // 1024 + 8
    script = " && ".join(
        [
            f"mount -t tmpfs -o size={size_kib}k tmpfs {disk}",
            f"cp {old_parquet} {target}",
            f"{{ {_batch_args(model_dir, march_file, str(target))}; rc=$?; }}",
            # The tmpfs vanishes with this namespace: check what it holds from inside.
            f"cmp {old_parquet} {target}",
            f"ls -A {disk} > {listing}",
            "exit $rc",
        ]
    )
    result = _in_private_mounts(script, tmp_path)
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write {target}: "), line
    assert "No space left on device" in line, line
    assert listing.read_text().split() == [target.name]  # cmp passed and no temp file is left


def test_an_output_path_that_is_a_directory_is_one_error_line(
    invoke: Invoke, march_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "out.parquet"
    (folder / "keep").mkdir(parents=True)
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", str(folder))
    assert result.exit_code == 1, result.output
    assert _one_error_line(result.stderr) == f"error: output is a directory, not a file: {folder}"
    assert [p.name for p in folder.iterdir()] == ["keep"]


def test_an_output_folder_that_cannot_be_made_is_one_error_line(
    invoke: Invoke, march_file: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "out"
    blocker.write_bytes(b"a file where the output folder should be")
    target = blocker / "2021" / "predictions.parquet"
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", str(target))
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line == f"error: cannot create output folder {target.parent}: Not a directory"
    assert blocker.read_bytes() == b"a file where the output folder should be"


# --- SQL ---------------------------------------------------------------------------------------

# The output table's columns, each with its SQL type and the parquet output's column it equals.
SQL_COLUMNS = {
    "ride_id": sa.String,
    "lpep_pickup_datetime": sa.DateTime,
    "PULocationID": sa.BigInteger,
    "DOLocationID": sa.BigInteger,
    "actual_duration": sa.Float,
    "predicted_duration": sa.Float,
    "diff": sa.Float,
    "model_version": sa.String,
}


def _rows(url: str, table: str = PREDICTIONS) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"select * from {table} order by 1"))]
    finally:
        engine.dispose()


def _execute(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """Return a SQLite file URL in its own folder (a folder can be mounted read-only)."""
    folder = tmp_path / "db"
    folder.mkdir()
    return f"sqlite:///{folder / 'out.db'}"


@pytest.fixture
def old_rows(sqlite_url: str, march_file: Path, invoke: Invoke) -> list[tuple]:
    """Return the rows a first good run wrote into the SQLite output."""
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", sqlite_url)
    assert result.exit_code == 0, result.output
    rows = _rows(sqlite_url)
    assert len(rows) > 1_000
    return rows


@pytest.mark.parametrize("column", list(SQL_COLUMNS))
def test_each_sql_output_column_has_its_type_and_the_parquet_values(
    column: str, old_rows: list[tuple], sqlite_url: str, old_parquet: Path
) -> None:
    import pandas as pd

    engine = sa.create_engine(sqlite_url)
    try:
        reflected = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(PREDICTIONS)}
        sql = pd.read_sql_table(PREDICTIONS, engine).set_index("ride_id", drop=False)
    finally:
        engine.dispose()
    assert isinstance(reflected[column], SQL_COLUMNS[column]), reflected[column]
    parquet = pd.read_parquet(old_parquet).set_index("ride_id", drop=False)
    assert sorted(sql.index) == sorted(parquet.index)
    pd.testing.assert_series_equal(
        sql[column].loc[parquet.index], parquet[column], check_dtype=False, check_names=False
    )


def test_an_existing_table_missing_columns_is_named_and_left_alone(
    sqlite_url: str, march_file: Path, invoke: Invoke
) -> None:
    _execute(
        sqlite_url,
        f"create table {PREDICTIONS} (ride_id varchar(64) primary key, "
        "PULocationID bigint, actual_duration float, batch_interval varchar(32))",
        f"insert into {PREDICTIONS} values ('old', 7, 1.5, '2021-03')",
    )
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", sqlite_url)
    assert result.exit_code == 1, result.output
    assert _one_error_line(result.stderr) == (
        f"error: table '{PREDICTIONS}' exists but lacks columns: lpep_pickup_datetime, "
        "DOLocationID, predicted_duration, diff, model_version"
    )
    assert _rows(sqlite_url) == [("old", 7, 1.5, "2021-03")]


def test_a_sqlite_output_that_is_not_a_database_is_one_error_line(
    march_file: Path, tmp_path: Path, invoke: Invoke
) -> None:
    # The likeliest slip: the URL names the parquet output instead of a database file.
    not_a_db = tmp_path / "predictions.parquet"
    not_a_db.write_bytes(b"PAR1" + bytes(range(256)) * 8)
    before = not_a_db.read_bytes()
    url = f"sqlite:///{not_a_db}"
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", url)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot use {url}#{PREDICTIONS}: "), line
    assert "file is not a database" in line, line
    assert not_a_db.read_bytes() == before


@contextlib.contextmanager
def _another_connection(sqlite_url: str) -> Iterator[Any]:
    """Yield a second SQLite connection (autocommit mode); roll back what it holds, then close."""
    import sqlite3

    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        yield other
    finally:
        other.execute("rollback")
        other.close()


def test_sqlite_locked_by_another_writer_fails_and_keeps_the_old_rows(
    old_rows: list[tuple], sqlite_url: str, march_file: Path, invoke: Invoke
) -> None:
    with _another_connection(sqlite_url) as other:
        other.execute("begin immediate")  # another job's write transaction, held open
        other.execute(f"delete from {PREDICTIONS} where ride_id = 'none'")
        result = invoke("--month", "2021-03", "--input", str(march_file), "--output", sqlite_url)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write to {sqlite_url}#{PREDICTIONS}: "), line
    assert "database is locked" in line, line
    assert _rows(sqlite_url) == old_rows


def test_sqlite_commit_blocked_by_a_reader_fails_and_keeps_the_old_rows(
    old_rows: list[tuple], sqlite_url: str, march_file: Path, invoke: Invoke
) -> None:
    # A reader's open transaction holds a shared lock: the job deletes and inserts (a reserved
    # lock allows that), then cannot get the exclusive lock its commit needs.
    with _another_connection(sqlite_url) as other:
        other.execute("begin")
        assert other.execute(f"select count(*) from {PREDICTIONS}").fetchone() == (len(old_rows),)
        result = invoke("--month", "2021-03", "--input", str(march_file), "--output", sqlite_url)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot commit to {sqlite_url}#{PREDICTIONS}: "), line
    assert "database is locked" in line, line
    assert _rows(sqlite_url) == old_rows


def test_sqlite_insert_refused_mid_write_fails_and_keeps_the_old_rows(
    old_rows: list[tuple], sqlite_url: str, march_file: Path, invoke: Invoke
) -> None:
    last_id = max(row[0] for row in old_rows)
    _execute(
        sqlite_url,
        f"create trigger refuse before insert on {PREDICTIONS} when new.ride_id = '{last_id}' "
        "begin select raise(abort, 'refused by a trigger'); end",
    )
    result = invoke(
        "--month", "2021-03", "--input", str(march_file), "--output", sqlite_url,
        "--chunk-rows", "500",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write to {sqlite_url}#{PREDICTIONS}: "), line
    assert "refused by a trigger" in line, line
    assert _rows(sqlite_url) == old_rows


def test_sqlite_on_a_read_only_file_system_fails_and_keeps_the_old_rows(
    old_rows: list[tuple], sqlite_url: str, march_file: Path, model_dir: Path, tmp_path: Path
) -> None:
    folder = Path(sqlite_url.removeprefix("sqlite:///")).parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    script = f"{mount} && exec {_batch_args(model_dir, march_file, sqlite_url)}"
    result = _in_private_mounts(script, tmp_path)
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write to {sqlite_url}#{PREDICTIONS}: "), line
    assert "readonly database" in line, line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert _rows(sqlite_url) == old_rows


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_schema_url: str) -> str:
    """Return a fresh schema's URL whose sessions carry a name another connection can find."""
    url = sa.engine.make_url(postgres_schema_url)
    name = f"deploy-writers-{url.query['options'].rsplit('=', 1)[-1]}"
    return url.update_query_dict({"application_name": name}).render_as_string(hide_password=False)


@pytest.fixture
def pg_old_rows(pg_url: str, march_file: Path, invoke: Invoke) -> list[tuple]:
    """Return the rows a first good run wrote into the PostgreSQL output."""
    result = invoke("--month", "2021-03", "--input", str(march_file), "--output", pg_url)
    assert result.exit_code == 0, result.output
    rows = _rows(pg_url)
    assert len(rows) > 1_000
    return rows


def _pg_target(url: str) -> str:
    from deploy_modes.batch.writers import SqlWriter

    return SqlWriter(url).describe()


def _rerun(invoke: Invoke, march_file: Path, url: str) -> object:
    return invoke(
        "--month", "2021-03", "--input", str(march_file), "--output", url, "--chunk-rows", "500"
    )  # fmt: skip


@pytest.mark.integration
def test_postgres_insert_failure_fails_the_job_and_keeps_the_old_rows(
    pg_old_rows: list[tuple], pg_url: str, march_file: Path, invoke: Invoke
) -> None:
    last_id = max(row[0] for row in pg_old_rows)
    _execute(
        pg_url,
        "create function refuse() returns trigger language plpgsql as $$ begin "
        "raise exception 'refused by a trigger'; end $$",
        f"create trigger refuse before insert on {PREDICTIONS} for each row "
        f"when (new.ride_id = '{last_id}') execute function refuse()",
    )
    result = _rerun(invoke, march_file, pg_url)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write to {_pg_target(pg_url)}: "), line
    assert "refused by a trigger" in line, line
    assert _rows(pg_url) == pg_old_rows


@pytest.mark.integration
def test_postgres_commit_failure_fails_the_job_and_keeps_the_old_rows(
    pg_old_rows: list[tuple], pg_url: str, march_file: Path, invoke: Invoke
) -> None:
    # A deferred constraint trigger runs at COMMIT: every insert succeeds, the commit fails.
    _execute(
        pg_url,
        "create function refuse_commit() returns trigger language plpgsql as $$ begin "
        "raise exception 'refused at commit'; end $$",
        f"create constraint trigger refuse_commit after insert on {PREDICTIONS} "
        "deferrable initially deferred for each row execute function refuse_commit()",
    )
    result = _rerun(invoke, march_file, pg_url)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot commit to {_pg_target(pg_url)}: "), line
    assert "refused at commit" in line, line
    assert _rows(pg_url) == pg_old_rows


@pytest.mark.integration
def test_postgres_connection_killed_before_commit_keeps_the_old_rows(
    pg_old_rows: list[tuple], pg_url: str, postgres_url: str, march_file: Path, invoke: Invoke
) -> None:
    import threading
    import time

    # At COMMIT a deferred trigger sleeps; another connection kills the job's backend there.
    _execute(
        pg_url,
        "create function stall() returns trigger language plpgsql as $$ begin "
        "perform pg_sleep(120); return null; end $$",
        f"create constraint trigger stall after insert on {PREDICTIONS} "
        "deferrable initially deferred for each row "
        f"when (new.ride_id = '{pg_old_rows[0][0]}') execute function stall()",
    )
    name = sa.engine.make_url(pg_url).query["application_name"]
    killed: list[int] = []

    def kill_at_commit() -> None:
        engine = sa.create_engine(postgres_url)
        try:
            deadline = time.monotonic() + 240
            while not killed and time.monotonic() < deadline:
                with engine.begin() as conn:
                    killed.extend(
                        conn.execute(
                            sa.text(
                                "select pid from pg_stat_activity where application_name = :n "
                                "and wait_event = 'PgSleep'"
                            ),
                            {"n": name},
                        ).scalars()
                    )
                    for pid in killed:
                        conn.execute(sa.text("select pg_terminate_backend(:p)"), {"p": pid})
                time.sleep(0.1)
        finally:
            engine.dispose()

    killer = threading.Thread(target=kill_at_commit)
    killer.start()
    try:
        result = _rerun(invoke, march_file, pg_url)
    finally:
        killer.join()
    assert killed, "the job's backend never reached the sleeping commit"
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: cannot commit to {_pg_target(pg_url)}: "), line
    assert "terminat" in line, line
    assert _rows(pg_url) == pg_old_rows


# --- S3 ----------------------------------------------------------------------------------------

_ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


@pytest.fixture(scope="module")
def guarded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """Start a moto server that checks IAM policies; return each user's environment by name.

    ``admin`` may do anything; ``no_put`` is denied ``PutObject``; ``no_head`` is denied
    ``HeadBucket``. A server of its own: turning authorisation on would fail the shared one's
    other users.
    """
    import json
    import urllib.request

    from deploy_modes.launch.emulator import ensure_emulator
    from deploy_modes.launch.processes import free_port

    emulator = ensure_emulator(port=free_port(), log_dir=tmp_path_factory.mktemp("moto-iam"))
    try:
        iam = emulator.client("iam")
        denied = {"no_put": ["s3:PutObject"], "no_head": ["s3:HeadBucket", "s3:ListBucket"]}
        envs: dict[str, dict[str, str]] = {}
        for user in ("admin", "no_put", "no_head"):
            iam.create_user(UserName=user)
            statements: list[dict[str, object]] = [_ALLOW_ALL]
            if user in denied:
                statements.append({"Effect": "Deny", "Action": denied[user], "Resource": "*"})
            iam.put_user_policy(
                UserName=user,
                PolicyName="access",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            envs[user] = {
                **emulator.env(),
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            }
        emulator.client("s3").create_bucket(
            Bucket="guarded", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        # From now on every request is signed-checked and authorised against the user's policy.
        request = urllib.request.Request(
            f"{emulator.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form body would hide the count
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.load(response)["status"] == "ok"
        yield envs
    finally:
        emulator.stop()


def _s3_object(env: dict[str, str], key: str) -> bytes:
    from deploy_modes.core.storage import aws_client

    s3 = aws_client(
        "s3",
        endpoint=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return s3.get_object(Bucket="guarded", Key=key)["Body"].read()


def _batch_to_s3(
    run_deploy: RunDeploy, model_dir: Path, march_file: Path, key: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``deploy batch`` as ``env``'s user in its own process (boto3 caches credentials)."""
    args = ["batch", "--runtime", "local", "--model", str(model_dir), "--month", "2021-03"]
    args += ["--input", str(march_file), "--output", f"s3://guarded/{key}"]
    return run_deploy(args, march_file.parent, env=env)


@pytest.fixture
def old_s3_object(
    guarded_s3: dict[str, dict[str, str]],
    run_deploy: RunDeploy,
    model_dir: Path,
    march_file: Path,
    tmp_path: Path,
) -> tuple[str, bytes]:
    """Return a fresh key the admin's good run wrote, and its bytes."""
    key = f"{tmp_path.name}/predictions.parquet"
    result = _batch_to_s3(run_deploy, model_dir, march_file, key, guarded_s3["admin"])
    assert result.returncode == 0, result.stderr
    return key, _s3_object(guarded_s3["admin"], key)


@pytest.mark.integration
def test_s3_upload_denied_by_policy_fails_the_job_and_keeps_the_old_object(
    guarded_s3: dict[str, dict[str, str]],
    old_s3_object: tuple[str, bytes],
    run_deploy: RunDeploy,
    model_dir: Path,
    march_file: Path,
) -> None:
    key, before = old_s3_object
    result = _batch_to_s3(run_deploy, model_dir, march_file, key, guarded_s3["no_put"])
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: upload to s3://guarded/{key} failed: "), line
    assert "AccessDenied" in line, line
    assert _s3_object(guarded_s3["admin"], key) == before


@pytest.mark.integration
def test_s3_head_bucket_access_denied_is_an_error_not_a_missing_bucket(
    guarded_s3: dict[str, dict[str, str]],
    old_s3_object: tuple[str, bytes],
    run_deploy: RunDeploy,
    model_dir: Path,
    march_file: Path,
) -> None:
    key, before = old_s3_object
    result = _batch_to_s3(run_deploy, model_dir, march_file, key, guarded_s3["no_head"])
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line.startswith("error: S3 request for s3://guarded failed: "), line
    assert "403" in line and "HeadBucket" in line, line
    assert "does not exist" not in line
    assert _s3_object(guarded_s3["admin"], key) == before


# --- The CLI's other outputs: `deploy data`, standard output ----------------------------------


def test_deploy_data_on_a_read_only_file_system_is_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    out = folder / "green_tripdata_2021-03.parquet"
    out.write_bytes(b"old month")
    mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"
    data = shlex.join([_deploy(), "data", "--month", "2021-03", "--rows", "500", "--out", str(out)])
    result = _in_private_mounts(f"{mount} && exec {data}", tmp_path)
    assert result.returncode == 1, result.stderr
    assert _one_error_line(result.stderr) == f"error: cannot write {out}: Read-only file system"
    assert out.read_bytes() == b"old month"
    assert [p.name for p in folder.iterdir()] == [out.name]


def test_deploy_data_on_a_full_disk_is_one_error_line_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "green_tripdata_2021-03.parquet"
    listing = tmp_path / "listing.txt"
    data = shlex.join(
        [_deploy(), "data", "--month", "2021-03", "--rows", "20000", "--out", str(out)]
    )
    script = " && ".join(
        [
            f"mount -t tmpfs -o size=64k tmpfs {disk}",
            f"printf 'old month' > {out}",
            f"{{ {data}; rc=$?; }}",
            f"cat {out} > {listing}",
            f"ls -A {disk} >> {listing}",
            "exit $rc",
        ]
    )
    result = _in_private_mounts(script, tmp_path)
    assert result.returncode == 1, result.stderr
    assert _one_error_line(result.stderr) == f"error: cannot write {out}: No space left on device"
    assert listing.read_text() == f"old month{out.name}\n"


@pytest.mark.parametrize("args", [["--help"], ["batch", "--help"], ["status"]])
def test_a_full_standard_output_is_one_error_line(args: list[str], tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [_deploy(), *args],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: cannot write to standard output: No space left on device\n"


def test_batch_json_into_a_full_standard_output_is_one_error_line(
    march_file: Path, model_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.parquet"
    args = [*shlex.split(_batch_args(model_dir, march_file, str(output))), "--json"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            args, cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
            check=False,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    line = _one_error_line(result.stderr)
    assert line == "error: cannot write to standard output: No space left on device"
    assert "Exception ignored" not in result.stderr
    assert output.is_file()  # the summary is printed after the output is complete
