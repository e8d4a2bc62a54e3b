"""The mutation runner's configuration and its guard: a run must test the copy it mutates."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("mutation_run", Path(__file__).with_name("run.py"))
assert _SPEC is not None and _SPEC.loader is not None
run = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(run)

TOOL, PACKAGE_DIR = run._settings()


@pytest.mark.parametrize("module", sorted(TOOL["modules"]))
def test_each_module_and_its_tests_exist_and_run_in_ci(module: str) -> None:
    assert (ROOT / f"{module}.py").is_file()
    assert module.split("/")[0] in PACKAGE_DIR.values()
    for test_file in TOOL["modules"][module]["tests"]:
        text = (ROOT / test_file).read_text()
        # A docker test never runs in the default selection, so it could not kill a mutant in CI.
        assert "mark.docker" not in text, test_file


def test_the_copy_is_what_the_tests_import(tmp_path: Path) -> None:
    src = tmp_path / "src"
    run._copy_tree(src)
    assert (src / "core" / "validation.py").read_bytes() == (
        ROOT / "core" / "validation.py"
    ).read_bytes()
    env = dict(os.environ, PYTHONPATH=str(run._shim(tmp_path, src, PACKAGE_DIR)))
    run._check_imports("core/validation", src, env, PACKAGE_DIR)


def test_a_run_that_would_test_the_work_tree_stops(tmp_path: Path) -> None:
    src = tmp_path / "src"
    run._copy_tree(src)
    # No shim: the editable install resolves deploy_modes.core to the work tree, not the copy.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with pytest.raises(SystemExit, match=r"imports from .*, not from the copy"):
        run._check_imports("core/validation", src, env, PACKAGE_DIR)


def test_an_unknown_module_is_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutation" / "run.py"), "core/nothing"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert (
        done.stderr == "error: core/nothing has no entry in pyproject's [tool.mutation.modules]\n"
    )


def test_a_resumed_copy_whose_module_differs_from_the_tree_stops(tmp_path: Path) -> None:
    src = tmp_path / "src"
    run._copy_tree(src)
    run._check_unmutated("core/validation", src)
    # An interrupted mutant left in the copy (or a module edited since the run began).
    copy = src / "core" / "validation.py"
    copy.write_text(copy.read_text().replace("!=", "==", 1))
    with pytest.raises(SystemExit, match=r"differs from .*interrupted mutant is still applied"):
        run._check_unmutated("core/validation", src)


def test_workers_each_get_their_own_copy_and_stop_on_leaving(tmp_path: Path) -> None:
    src = tmp_path / "src"
    run._copy_tree(src)
    with run._workers("core/validation", tmp_path, src, PACKAGE_DIR, 2) as urls:
        config = run._write_config(tmp_path, "core/validation", TOOL, urls)
        assert len(urls) == 2 and all(url.startswith("http://127.0.0.1:") for url in urls)
        text = config.read_text()
        assert 'name = "http"' in text and f"worker-urls = {json.dumps(urls)}" in text
        for index in range(2):
            copy = tmp_path / "workers" / f"w{index}" / "src"
            assert (copy / "core" / "validation.py").read_bytes() == (
                src / "core" / "validation.py"
            ).read_bytes()
    # Stopped on leaving: nothing listens on their ports any more.
    for url in urls:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1)


def test_one_process_runs_locally(tmp_path: Path) -> None:
    config = run._write_config(tmp_path, "core/validation", TOOL, [])
    assert 'name = "local"' in config.read_text()
