"""Unit tests of the compose side that need no engine: stacks, Dockerfiles, the requirement sets."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from deploy_modes.compose.stack import COMPOSE_DIR, MODES, Stack
from deploy_modes.core.errors import DeployError

REPO = COMPOSE_DIR.parent
PREFIX_VAR = "DEPLOY_COMPOSE_PROJECT_PREFIX"
REQUIREMENTS = COMPOSE_DIR / "requirements.py"


def _stack(mode: str) -> dict:
    return yaml.safe_load((COMPOSE_DIR / f"{mode}.yml").read_text())


def _requirements(*groups: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS), str(REPO / "pyproject.toml"), *groups],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("mode", MODES)
def test_every_published_port_is_loopback_only(mode: str) -> None:
    for name, service in _stack(mode)["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{mode}/{name} publishes {port}"


@pytest.mark.parametrize("mode", MODES)
def test_the_model_is_mounted_read_only_where_it_is_used(mode: str) -> None:
    services = _stack(mode)["services"]
    users = {
        name
        for name, service in services.items()
        if "DEPLOY_MODEL_LOCATION" in (service.get("environment") or {})
    }
    assert users, f"no service of {mode} loads the model"
    for name in users:
        mounts = [v for v in services[name].get("volumes", []) if v.endswith(":/model:ro")]
        assert len(mounts) == 1, f"{mode}/{name} must mount the model read-only at /model"


def test_stacks_have_distinct_project_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PREFIX_VAR)  # tests/conftest.py sets the test suite's own
    projects = {Stack(mode).project for mode in MODES}
    assert projects == {"deploy-web", "deploy-batch", "deploy-stream"}


def test_the_project_prefix_names_every_stack_and_its_compose_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PREFIX_VAR, "ci_2-deploy")
    assert {Stack(mode).project for mode in MODES} == {f"ci_2-deploy-{mode}" for mode in MODES}
    args = Stack("web").args("ps")
    assert args[args.index("-p") + 1] == "ci_2-deploy-web"


@pytest.mark.parametrize("prefix", ["Deploy", "-deploy", "_x", "my stack", "", "dé"])
def test_a_bad_project_prefix_is_one_clear_line(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX_VAR, prefix)
    with pytest.raises(DeployError) as raised:
        Stack("web")
    message = str(raised.value)
    assert f"{PREFIX_VAR}={prefix!r}" in message and "\n" not in message
    assert "lowercase letters, digits, dashes and underscores" in message
    with pytest.raises(DeployError, match="lowercase letters"):  # given, not only from the env
        Stack("batch", prefix=prefix)


def test_stacks_that_need_aws_wait_for_a_healthy_emulator_and_an_init_step() -> None:
    for mode, job in (("batch", "batch"), ("stream", "consumer")):
        services = _stack(mode)["services"]
        assert services["init"]["depends_on"]["emulator"]["condition"] == "service_healthy"
        assert services[job]["depends_on"]["init"]["condition"] == (
            "service_completed_successfully"
        )
        assert services["init"]["environment"]["AWS_ENDPOINT_URL"] == "http://emulator:4566"


def test_stream_init_uses_the_stream_modes_own_command() -> None:
    command = _stack("stream")["services"]["init"]["command"]
    assert command[:3] == ["deploy", "stream", "init"]  # it waits until each stream is ACTIVE


def test_the_producer_only_runs_on_request() -> None:
    assert _stack("stream")["services"]["producer"]["profiles"] == ["producer"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "emulator.Dockerfile"])
def test_dockerfiles_run_as_non_root_from_a_venv_without_pip_caches(dockerfile: str) -> None:
    text = (COMPOSE_DIR / dockerfile).read_text()
    assert "python3 -m venv /opt/venv" in text
    assert "PIP_NO_CACHE_DIR=1" in text
    assert "-c /build/constraints.txt" in text  # pinned versions
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and all(user != "root" for user in users)
    instructions = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("curl" in line for line in instructions)  # slim images have no curl
    assert "AWS_SECRET" not in text and "TOKEN" not in text


def test_each_mode_stage_is_healthchecked_or_run_once() -> None:
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    stages = text.split("\nFROM ")
    web = next(stage for stage in stages if stage.startswith("base AS web"))
    assert "HEALTHCHECK" in web and "/ready" in web


def test_dockerignore_sends_only_sources_and_pins() -> None:
    lines = (REPO / ".dockerignore").read_text().split()
    assert lines[lines.index("*") :][0] == "*"
    for needed in ("!pyproject.toml", "!constraints.txt", "!core/", "!web/", "!batch/"):
        assert needed in lines
    assert not any(line.startswith(("!.venv", "!data", "!models")) for line in lines)


def _sent_to_the_daemon(path: str, patterns: list[str]) -> bool:
    """Return whether .dockerignore ``patterns`` send ``path`` (the last matching one wins)."""
    sent = True
    for pattern in patterns:
        keep = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
            sent = keep
    return sent


def test_every_package_the_image_installs_reaches_the_build() -> None:
    # `pip install .` in every image builds every package of pyproject: a folder the
    # .dockerignore holds back would break the image build, not any test run here.
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    folders = pyproject["tool"]["setuptools"]["package-dir"].values()
    for folder in folders:
        modules = sorted((REPO / folder).glob("*.py"))
        assert modules, folder
        for module in modules:
            name = module.relative_to(REPO).as_posix()
            assert _sent_to_the_daemon(name, patterns), f"{name} is not sent to the build"
    assert _sent_to_the_daemon("compose/init/init_aws.py", patterns)
    assert not _sent_to_the_daemon("compose/web.yml", patterns)
    assert not _sent_to_the_daemon(".venv/bin/python", patterns)


def test_requirements_expand_self_references_from_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    base = _requirements("core", "cli")
    assert base == [*pyproject["project"]["dependencies"], "typer", "rich"]
    batch = _requirements("batch")
    assert {"pandas", "pyarrow", "boto3"} <= set(batch)  # via deploy-modes[data,aws]
    assert not any(line.startswith("deploy-modes") for line in batch)
    assert _requirements("emulator") == ["moto[server]"]


def test_requirements_reject_an_unknown_group() -> None:
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS), str(REPO / "pyproject.toml"), "gpu"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown dependency group 'gpu'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stack_of_an_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(DeployError, match="unknown mode 'lambda'"):
        Stack("lambda")


def test_a_stack_without_its_compose_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"compose file .* not found"):
        Stack("web", files=(tmp_path / "missing.yml",))


TRUST_KEYS = ("DEPLOY_TRUST_PICKLE", "DEPLOY_TRUSTED_TYPES", "DEPLOY_MODEL_SHA256")


@pytest.mark.parametrize("mode", MODES)
def test_every_model_loader_gets_the_trust_variables(mode: str) -> None:
    from deploy_modes.core.artifact import Trust
    from deploy_modes.core.settings import CoreSettings

    services = _stack(mode)["services"]
    loaders = [
        s for s in services.values() if "DEPLOY_MODEL_LOCATION" in (s.get("environment") or {})
    ]
    assert loaders, mode
    for service in loaders:
        env = service["environment"]
        defaults = {}
        for key in TRUST_KEYS:
            # Passed through from the caller's environment (what `deploy` sets), else a default.
            assert str(env.get(key, "")).startswith(f"${{{key}:-"), (mode, key, env.get(key))
            defaults[key] = env[key][len(key) + 4 : -1]
        # The defaults must parse and grant nothing: an empty bool would fail every container.
        settings = CoreSettings(
            **{k.removeprefix("DEPLOY_").lower(): v for k, v in defaults.items()}
        )
        assert Trust.from_settings(settings) == Trust()


def test_the_stacks_pass_the_trust_they_are_given(
    bare_pickle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy_modes.compose.stacks import stack_env
    from deploy_modes.core.artifact import Trust

    monkeypatch.chdir(tmp_path)  # the staged model copy goes under .deploy/
    monkeypatch.delenv("DEPLOY_TRUST_PICKLE", raising=False)
    with pytest.raises(DeployError, match="--trust-pickle"):
        stack_env("web", str(bare_pickle))  # staging checks the model with no trust granted
    trust = Trust(pickle=True, types=("a.B", "c.D"), sha256="")
    env = stack_env("stream", str(bare_pickle), trust)
    assert env["DEPLOY_TRUST_PICKLE"] == "1"
    assert env["DEPLOY_TRUSTED_TYPES"] == "a.B,c.D"
    assert env["DEPLOY_MODEL_SHA256"] == ""
    assert Path(env["DEPLOY_COMPOSE_MODEL_DIR"], "lin_reg.bin").is_file()


def test_dask_workers_share_the_jobs_model_mount_s3_and_scheduler() -> None:
    from deploy_modes.compose.stacks import SCHEDULER_PORT

    services = _stack("batch")["services"]
    job, worker, scheduler = services["batch"], services["worker"], services["scheduler"]
    # Workers load the model by the location the job names, and read/write S3 as it does.
    assert worker["volumes"] == job["volumes"]
    assert worker["environment"]["AWS_ENDPOINT_URL"] == job["environment"]["AWS_ENDPOINT_URL"]
    assert worker["image"] == scheduler["image"] == job["image"]
    assert worker["command"][:3] == ["dask", "worker", f"tcp://scheduler:{SCHEDULER_PORT}"]
    assert scheduler["command"][:2] == ["dask", "scheduler"]
    assert str(SCHEDULER_PORT) in scheduler["command"]
    assert worker["depends_on"]["scheduler"]["condition"] == "service_healthy"
    # Only `--engine dask` starts them: the job never depends on the cluster.
    assert "scheduler" not in job["depends_on"] and "worker" not in job["depends_on"]


def test_the_batch_image_can_run_dask() -> None:
    assert {"dask", "distributed"} <= set(_requirements("batch", "dask"))
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    assert "pyproject.toml batch dask >" in text
