"""``deploy compare --runtime compose`` on a real Docker engine (marker docker).

The same small run as the local test: 300 rides through the batch, web and stream stacks,
figures present and positive, agreement, a valid PNG, and no stack left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy_modes.compose.stack import MODES, Stack, docker_client

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_stacks() -> Iterator[None]:
    """Refuse to start over a stack someone left; remove ours afterwards, even on failure."""
    for mode in MODES:
        if Stack(mode).containers():
            reason = f"a {mode} stack already runs here: deploy down {mode} first"
            # In CI a leftover stack is a bug of an earlier test or docs block, never a skip.
            if os.environ.get("DEPLOY_REQUIRE_DOCKER") == "1":
                pytest.fail(f"{reason} (and DEPLOY_REQUIRE_DOCKER=1 forbids skipping)")
            pytest.skip(reason)
    yield
    for mode in MODES:
        with contextlib.suppress(Exception):
            Stack(mode).down()


def test_compare_in_the_compose_runtime(
    model_dir: Path,
    tmp_path: Path,
    no_stacks: None,
    deploy_cli: Callable[..., Any],
) -> None:
    out = tmp_path / "report"
    result = deploy_cli(
        [
            *("compare", "--rides", "300", "--runtime", "compose"),
            *("--out", str(out), "--model", str(model_dir)),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads((out / "compare.json").read_text())
    with contextlib.closing(docker_client()) as client:
        native = "Docker Desktop" not in str(client.info().get("OperatingSystem", ""))
    assert report["runtime"] == "compose"
    assert report["agreement"]["ok"] is True
    for mode in ("batch", "web", "stream"):
        figures = report["modes"][mode]
        assert figures["predictions"] == 300, mode
        for key in ("startup_s", "wall_s", "throughput_rides_per_s"):
            assert figures[key] > 0, (mode, key)
        assert figures["latency_ms"]["p50"] > 0, mode
        # Container processes are visible from the host on a native engine only: there the
        # peak must be real; in a VM (Docker Desktop) the host sees none of them.
        if native:
            assert figures["peak_rss_mb"] > 0, mode
        else:
            assert figures["peak_rss_mb"] == 0, mode
    png = (out / "compare.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    for mode in MODES:
        assert not Stack(mode).containers(), f"the {mode} stack was left behind"


def test_compare_refuses_to_mix_with_a_running_stack(
    model_dir: Path, tmp_path: Path, no_stacks: None, deploy_cli: Callable[..., Any]
) -> None:
    from deploy_modes.compose.stacks import WebStack, up_web
    from deploy_modes.launch.processes import free_port

    up_web(WebStack(port=free_port(), model=str(model_dir)))
    result = deploy_cli(
        ["compare", "--rides", "10", "--runtime", "compose", "--model", str(model_dir)],
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "already exists" in result.stderr and "deploy down web" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
