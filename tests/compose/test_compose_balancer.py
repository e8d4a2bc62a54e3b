"""The scaled web stack's files without an engine: the derived compose file, nginx, staging."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.compose.replicas import (
    CURRENT,
    MAX_REPLICAS,
    RELOAD_FILE,
    prune_models,
    replica_number,
    replicas_file,
    stage_replica_model,
)
from deploy_modes.compose.stack import COMPOSE_DIR
from deploy_modes.compose.stacks import WebStack
from deploy_modes.core.errors import DeployError

NGINX = (COMPOSE_DIR / "balancer" / "nginx.conf").read_text()
DOCKERFILE = (COMPOSE_DIR / "balancer.Dockerfile").read_text()
runner = CliRunner()


def _directives(name: str) -> list[str]:
    """Return the arguments of every ``name`` directive in nginx.conf (comments stripped)."""
    text = re.sub(r"#[^\n]*", "", NGINX)
    return [m.strip() for m in re.findall(rf"(?m)^\s*{name}\s+([^;]*);", text)]


def test_the_replicas_file_is_web_yml_with_free_ports_and_the_balancer(tmp_path: Path) -> None:
    derived = yaml.safe_load(replicas_file(tmp_path).read_text())
    original = yaml.safe_load((COMPOSE_DIR / "web.yml").read_text())
    web, balancer = derived["services"]["web"], derived["services"]["balancer"]
    # The replicas publish no fixed host port (N of them could not share one), loopback only.
    assert web["ports"] == ["127.0.0.1::9696"]
    assert web["environment"]["DEPLOY_WEB_RELOAD_FILE"] == RELOAD_FILE
    original_web = original["services"]["web"]
    assert {k: v for k, v in web["environment"].items() if k != "DEPLOY_WEB_RELOAD_FILE"} == (
        original_web["environment"]
    )
    rest = ("ports", "environment")
    assert {k: v for k, v in web.items() if k not in rest} == {
        k: v for k, v in original_web.items() if k not in rest
    }
    # The balancer takes the stack's port, on loopback only, once a replica is healthy.
    assert balancer["ports"] == original["services"]["web"]["ports"]
    assert all(str(p).startswith("127.0.0.1:") for p in balancer["ports"])
    assert balancer["depends_on"]["web"]["condition"] == "service_healthy"
    # Built FROM the same base image as the mode images.
    assert balancer["build"]["args"]["BASE_IMAGE"] == web["build"]["args"]["BASE_IMAGE"]
    assert balancer["build"]["dockerfile"] == "compose/balancer.Dockerfile"
    assert balancer["restart"] == web["restart"] == "unless-stopped"


def test_nginx_re_resolves_the_replicas_and_retries_a_dying_one() -> None:
    resolver = _directives("resolver")
    assert len(resolver) == 1 and resolver[0].startswith("127.0.0.11 ")  # Docker's DNS
    valid = re.search(r"valid=(\d+)s", resolver[0])
    assert valid and int(valid.group(1)) <= 5
    # A variable in proxy_pass is resolved per request; a literal host once, at start.
    (target,) = _directives("proxy_pass")
    assert target == "http://$replicas:9696"
    assert _directives("set") == ["$replicas web"]
    (retry,) = _directives("proxy_next_upstream")
    assert set(retry.split()) >= {"error", "timeout", "http_502", "http_503", "non_idempotent"}
    (tries,) = _directives("proxy_next_upstream_tries")
    assert 2 <= int(tries) <= 5  # bounded: a request is never retried forever
    assert _directives("proxy_next_upstream_timeout") and _directives("proxy_connect_timeout")
    assert "X-Upstream $upstream_addr always" in _directives("add_header")
    assert _directives("listen") == ["9696"]
    assert "upstream" not in re.sub(r"#[^\n]*|\$upstream_addr|proxy_next_upstream\w*", "", NGINX)


def test_the_balancer_image_is_debians_nginx_healthchecked_on_ready() -> None:
    assert "ARG BASE_IMAGE=python:3.11-slim" in DOCKERFILE
    assert "FROM ${BASE_IMAGE}" in DOCKERFILE
    assert "apt-get install" in DOCKERFILE and " nginx " in DOCKERFILE
    assert "COPY compose/balancer/nginx.conf /etc/nginx/nginx.conf" in DOCKERFILE
    (health,) = [line for line in DOCKERFILE.splitlines() if "CMD [" in line and "ready" in line]
    assert "127.0.0.1:9696/ready" in health and "python3" in health
    users = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert users and all(user != "root" for user in users)
    instructions = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    assert not any("curl" in line for line in instructions)
    # Everything nginx writes is somewhere its non-root user may write.
    for name in ("pid", *(f"{kind}_temp_path" for kind in ("client_body", "proxy"))):
        (path,) = _directives(name)
        assert path.startswith("/tmp/"), (name, path)
    assert _directives("error_log") == ["stderr warn"]


def test_the_nginx_config_reaches_the_build() -> None:
    lines = (COMPOSE_DIR.parent / ".dockerignore").read_text().split()
    assert "!compose/balancer/" in lines


def test_replicas_start_from_the_current_link_and_a_roll_adds_beside_it(tmp_path: Path) -> None:
    first = tmp_path / "bake" / "model"
    first.mkdir(parents=True)
    (first / "manifest.json").write_text("{}")
    env = {"DEPLOY_COMPOSE_MODEL_DIR": str(first), "DEPLOY_COMPOSE_MODEL_PATH": "/model"}
    stage = tmp_path / "replicas"
    staged, key = stage_replica_model(env, stage)
    models = Path(staged["DEPLOY_COMPOSE_MODEL_DIR"])
    assert models == (stage / "model").resolve()
    assert staged["DEPLOY_COMPOSE_MODEL_PATH"] == f"/model/{CURRENT}"
    link = models / CURRENT
    assert link.is_symlink() and os.readlink(link) == key  # relative: it resolves in a container
    assert (link / "manifest.json").is_file() and not first.exists()

    # A bare pickle: the path inside names the file under the link.
    second = tmp_path / "bake2" / "model"
    second.mkdir(parents=True)
    (second / "lin_reg.bin").write_bytes(b"x")
    env = {
        "DEPLOY_COMPOSE_MODEL_DIR": str(second),
        "DEPLOY_COMPOSE_MODEL_PATH": "/model/lin_reg.bin",
    }
    staged, newer = stage_replica_model(env, stage)
    assert staged["DEPLOY_COMPOSE_MODEL_PATH"] == f"/model/{CURRENT}/lin_reg.bin"
    assert os.readlink(link) == newer and (models / key).is_dir()
    prune_models(models, newer)
    assert sorted(p.name for p in models.iterdir()) == sorted([CURRENT, newer])


@pytest.mark.parametrize(
    ("name", "number"), [("deploy-web-web-2", 2), ("deploy-web_web_12", 12), ("web", 0)]
)
def test_replicas_are_numbered_as_either_compose_names_them(name: str, number: int) -> None:
    assert replica_number(name) == number


@pytest.mark.parametrize("replicas", [0, 17])
def test_a_replica_count_out_of_range_is_refused(replicas: int) -> None:
    with pytest.raises(DeployError, match=r"--replicas must be 1\.\.16"):
        WebStack(replicas=replicas)


@pytest.mark.parametrize(
    ("replicas", "bound"),
    [
        ("0", "greater than or equal to 1"),
        (str(MAX_REPLICAS + 1), f"less than or equal to {MAX_REPLICAS}"),
    ],
)
def test_the_cli_refuses_a_replica_count_out_of_range_before_anything_runs(
    replicas: str, bound: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["web", "--runtime", "compose", "--replicas", replicas])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--replicas'" in result.output and bound in result.output
    assert "Traceback" not in result.output and not (tmp_path / ".deploy").exists()


def test_replicas_without_compose_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["web", "--runtime", "local", "--replicas", "2"])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: --replicas scales the compose stack (--runtime compose)")
    assert not (tmp_path / ".deploy").exists()  # refused before a model or a server
