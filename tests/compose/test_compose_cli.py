"""The compose-facing CLI without an engine: clear errors, skips and staging (no Docker needed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy_modes.compose.model import bake_file, stage_model
from deploy_modes.compose.stack import COMPOSE_DIR, Stack, compose_command
from deploy_modes.compose.stacks import BatchStack, StreamStack, WebStack
from deploy_modes.core.errors import DeployError, ModelLoadError
from deploy_modes.launch.emulator import Emulator

DEPLOY = str(Path(sys.executable).parent / "deploy")
INIT = COMPOSE_DIR / "init" / "init_aws.py"
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "COLUMNS": "200"}


def _deploy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEPLOY, *args],
        cwd=cwd,
        env={**os.environ, **NO_ENGINE},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _clean_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("mode", ["web", "batch", "stream"])
def test_runtime_compose_without_an_engine_says_what_to_do(mode: str, tmp_path: Path) -> None:
    args = [mode, "--runtime", "compose"]
    if mode == "batch":
        args += ["--month", "2021-03"]
    result = _deploy(*args, cwd=tmp_path)
    _clean_failure(result, "--runtime compose needs Docker")
    assert "--runtime local" in result.stderr
    assert not (tmp_path / ".deploy").exists()  # nothing staged, nothing trained


def test_status_without_an_engine_checks_local_services_only(tmp_path: Path) -> None:
    result = _deploy("status", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no Docker engine answers" in result.stdout


def test_down_all_without_an_engine_has_nothing_to_remove(tmp_path: Path) -> None:
    result = _deploy("down", "--all", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no compose stack can be running" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["down"], "name a mode (web, batch, stream) or pass --all"),
        (["down", "web", "--all"], "name a mode or pass --all, not both"),
        (["down", "lambda"], "unknown mode 'lambda'"),
        (["logs", "lambda"], "unknown mode 'lambda'"),
        (["logs", "web"], "no Docker engine answers"),
        (["logs", "stream"], "no local stream process runs from this folder"),
        # `deploy batch` runs in the foreground: there is no local process to find.
        (["logs", "batch"], "a local batch run prints to its own terminal and exits"),
    ],
)
def test_bad_arguments_are_one_clear_line(args: list[str], message: str, tmp_path: Path) -> None:
    _clean_failure(_deploy(*args, cwd=tmp_path), message)


def test_logs_needs_a_mode(tmp_path: Path) -> None:
    result = _deploy("logs", cwd=tmp_path)
    assert result.returncode == 2 and "Missing argument" in result.stderr


@pytest.mark.parametrize("command", ["status", "logs", "down"])
def test_help_shows_an_example(command: str, tmp_path: Path) -> None:
    result = _deploy(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Example: deploy" in result.stdout


@pytest.mark.parametrize("options", [WebStack, BatchStack, StreamStack])
def test_a_misspelt_stack_option_fails_instead_of_being_ignored(options: type) -> None:
    with pytest.raises(TypeError, match="prot"):
        options(prot=1)


@pytest.fixture
def fresh_compose_detection() -> Iterator[None]:
    compose_command.cache_clear()
    yield
    compose_command.cache_clear()


# Stand-ins for the two compose commands: real executables that record their argv (one line,
# NUL-separated) and answer `docker compose version` as the plugin would, or as a docker
# without it does (exit 1).
_RECORDER = """#!/bin/sh
printf '%s\\0' "${{0##*/}}" "$@" >> "{log}"
printf '\\n' >> "{log}"
{body}
"""
_PLUGIN = {"present": "exit 0", "absent": '[ "$1" = compose ] && exit 1; exit 0'}


def _install(folder: Path, name: str, log: Path, body: str = "exit 0") -> None:
    script = folder / name
    script.write_text(_RECORDER.format(log=log, body=body))
    script.chmod(0o755)


def _calls(log: Path) -> list[list[str]]:
    """Return each recorded call as [program, arg, ...]."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.rstrip("\0").split("\0") for line in lines]


@pytest.mark.parametrize(
    ("installed", "chosen"),
    [
        ({"docker": "present", "docker-compose": True}, ["docker", "compose"]),  # v2 wins
        ({"docker": "present", "docker-compose": False}, ["docker", "compose"]),  # v2 only
        ({"docker": "absent", "docker-compose": True}, ["docker-compose"]),  # v1 only
        ({"docker": None, "docker-compose": True}, ["docker-compose"]),  # no docker CLI
    ],
)
def test_the_compose_command_is_chosen_once_and_called_with_the_stack(
    installed: dict[str, object],
    chosen: list[str],
    fresh_compose_detection: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    if installed["docker"]:
        _install(bin_dir, "docker", log, _PLUGIN[str(installed["docker"])])
    if installed["docker-compose"]:
        _install(bin_dir, "docker-compose", log)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DEPLOY_COMPOSE_PROJECT_PREFIX", "argv-check")
    stack = Stack("web")
    stack.capture("ps", "-q")
    stack.capture("port", "web", "9696")
    probe = [["docker", "compose", "version"]] if installed["docker"] else []
    common = ["-p", "argv-check-web", "--project-directory", str(COMPOSE_DIR)]
    files = ["-f", str(COMPOSE_DIR / "web.yml")]
    assert _calls(log) == [  # probed once (cached), then each call through the one chosen
        *probe,
        [*chosen, *common, *files, "ps", "-q"],
        [*chosen, *common, *files, "port", "web", "9696"],
    ]


@pytest.mark.parametrize("docker", [None, "absent"])
def test_no_compose_installed_is_a_clear_error(
    docker: str | None,
    fresh_compose_detection: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "calls"
    if docker:  # a docker CLI without the compose plugin, and no docker-compose
        _install(tmp_path, "docker", log, _PLUGIN[docker])
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeployError, match=r"neither `docker compose` \(v2\) nor `docker-compose`"):
        Stack("web").capture("ps")
    assert _calls(log) == ([["docker", "compose", "version"]] if docker else [])


def test_the_model_is_staged_readable_for_the_non_root_user(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in model_dir.iterdir():
        path.chmod(0o600)  # what an atomic write (mkstemp) leaves behind
    env = stage_model("web", str(model_dir))
    staged = Path(env["DEPLOY_COMPOSE_MODEL_DIR"])
    assert env["DEPLOY_COMPOSE_MODEL_PATH"] == "/model"
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in model_dir.iterdir())
    for path in staged.iterdir():
        assert path.stat().st_mode & stat.S_IROTH, f"{path.name} not world-readable"
    assert staged.is_relative_to(tmp_path / ".deploy" / "compose" / "web")


def test_a_bare_pickle_is_staged_and_pointed_at(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    import pickle

    from deploy_modes.core.artifact import load_model

    pipeline = load_model(model_dir).pipeline
    monkeypatch.setenv("DEPLOY_TRUST_PICKLE", "1")  # a pickle loads only when trusted
    bare = tmp_path / "lin_reg.bin"
    bare.write_bytes(pickle.dumps((pipeline.steps[0][1], pipeline.steps[-1][1])))
    env = stage_model("web", str(bare))
    assert env["DEPLOY_COMPOSE_MODEL_PATH"] == "/model/lin_reg.bin"
    assert (Path(env["DEPLOY_COMPOSE_MODEL_DIR"]) / "lin_reg.bin").is_file()


def test_a_broken_model_fails_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pkl").write_bytes(b"not a pickle")
    (broken / "manifest.json").write_text("{}")
    with pytest.raises(ModelLoadError):
        stage_model("web", str(broken))


def test_an_s3_model_is_refused_with_a_way_out(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="mounts a local model"):
        stage_model("web", "s3://bucket/models/ride-duration")


@pytest.mark.parametrize("mode", ["web", "batch", "stream"])
def test_bake_swaps_the_model_mount_for_a_build(mode: str, tmp_path: Path) -> None:
    model = tmp_path / "bake" / "model"
    model.mkdir(parents=True)
    stack = Stack(mode, env={"DEPLOY_COMPOSE_MODEL_DIR": str(model)})
    baked = yaml.safe_load(bake_file(stack).read_text())
    original = yaml.safe_load((COMPOSE_DIR / f"{mode}.yml").read_text())
    assert (tmp_path / "bake" / "Dockerfile").read_text().count("COPY model /model") == 1
    changed = 0
    for name, service in baked["services"].items():
        assert not any(str(v).endswith(":/model:ro") for v in service.get("volumes", []))
        if service["image"] != original["services"][name]["image"]:
            changed += 1
            assert "-baked:" in service["image"]
            assert service["build"]["context"] == str(tmp_path / "bake")
            assert service["build"]["args"]["IMAGE"] == original["services"][name]["image"]
    assert changed >= 1


@pytest.mark.integration
def test_init_prepares_buckets_and_a_month_idempotently(
    moto_server: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, **moto_server.env()}
    args = [
        sys.executable,
        str(INIT),
        "--bucket=compose-out",
        "--month=2021-03",
        "--month-uri=s3://compose-in/input/green_tripdata_2021-03.parquet",
        "--rows=500",
    ]
    first = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "wrote 500 generated rides" in first.stdout
    second = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "exists" in second.stdout and "wrote" not in second.stdout

    from deploy_modes.core.data import read_trips

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    frame = read_trips("s3://compose-in/input/green_tripdata_2021-03.parquet")
    assert len(frame) == 500


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--rows=0"], 2, "--rows must be 1..10000000"),
        (["--rows=many"], 2, "invalid int value"),
        (["--month=2021-13", "--month-uri=s3://b/x.parquet"], 1, "month must look like YYYY-MM"),
        (["--month=2021-03", "--month-uri=/tmp/x.parquet"], 1, "not an S3 URI"),
    ],
)
def test_init_rejects_bad_arguments_clearly(
    moto_server: Emulator, extra: list[str], code: int, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(INIT), *extra],
        env={**os.environ, **moto_server.env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"first": "2021-01", "last": "2021-02"}, "scores one --month"),
        ({"run_date": "2021-04-01"}, "use --runtime local for"),
        ({"month": "2021-13"}, "month must look like YYYY-MM"),
        ({"month": "March"}, "month must look like YYYY-MM"),
        ({"engine": "dask", "scheduler": "tcp://h:8786"}, "runs its own Dask scheduler"),
        ({"workers": 2}, "--workers needs --engine dask"),
        ({"engine": "dask", "workers": 0}, "--workers must be 1..16"),
    ],
)
def test_batch_options_the_stack_cannot_honour_fail_before_anything_starts(
    options: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployError, match=message):
        BatchStack(**options)
    assert not (tmp_path / ".deploy").exists()


def test_a_missing_socket_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from deploy_modes.compose.stack import connect_engine

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    client, why = connect_engine(timeout=1)
    assert client is None
    assert why == f"no Docker engine answers (no socket at {tmp_path}/docker.sock)"


def test_a_refused_engine_is_reported_without_leaking_its_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gc
    import socket

    from deploy_modes.compose.stack import connect_engine

    # A stale socket file (a dockerd that died): connecting is refused. docker-py leaves the
    # refused socket open, which would warn at some later garbage collection.
    stale = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(stale))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")
    client, why = connect_engine(timeout=1)
    assert client is None and why.startswith("no Docker engine answers (")
    gc.collect()  # a socket left open would warn here, and warnings fail tests
