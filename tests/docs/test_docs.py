"""Run every shell block of README.md and docs/*.md as written, in order, one folder per file.

``DEPLOY_DOCS_SLOW=1`` (set by ``.ci/run``) also runs the blocks marked ``slow``; the
``docker`` blocks run in the docker suite (``pytest -m docker``). ``tests/docs/docs_harness.py``
says how blocks are classified.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_harness import SKIPS, Block, DocsError, Project, doc_files, parse_blocks

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def _cases() -> list[object]:
    cases: list[object] = []
    for path in doc_files(REPO):
        try:
            blocks = [block for block in parse_blocks(path) if block.runs]
        except DocsError as exc:
            cases.append(pytest.param(None, str(exc), id=path.name, marks=pytest.mark.docs))
            continue
        for index, block in enumerate(blocks):
            last = all(later.skip or later.flags for later in blocks[index + 1 :])
            marks = [pytest.mark.docs] + ([pytest.mark.docker] if "docker" in block.flags else [])
            cases.append(pytest.param(block, last, id=block.where, marks=marks))
    return cases


def _makes_venv(block: Block) -> bool:
    return any("python3 -m venv .venv" in command.text for command in block.commands)


@pytest.fixture(scope="session")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Project]]:
    """One fresh project folder per markdown file; stop what is left running at the end."""
    made: dict[Path, Project] = {}
    yield made
    for project in made.values():
        project.stop()


@pytest.mark.parametrize(("block", "last"), _cases())
def test_block(
    block: Block | None,
    last: object,
    projects: dict[Path, Project],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Run one block as written; fail with file:line, the command, and expected vs got."""
    if block is None:
        pytest.fail(str(last), pytrace=False)
    if block.skip:
        pytest.skip(f"{block.where}: not run: {SKIPS[block.skip]}")
    slow = os.environ.get("DEPLOY_DOCS_SLOW") == "1"
    if "slow" in block.flags and not slow:
        pytest.skip(f"{block.where}: slow; .ci/run runs it (DEPLOY_DOCS_SLOW=1)")
    project = projects.get(block.path)
    if project is None:
        folder = tmp_path_factory.mktemp(block.path.stem)
        # With the slow blocks on, the quick start builds the folder's own venv, as on a clone;
        # a file whose first block to run is another (the docker suite's) gets the test venv.
        link = not (slow and _makes_venv(block))
        project = projects[block.path] = Project(folder, REPO, VENV, link_venv=link)
    failures = []
    try:
        project.run(block)
    except DocsError as exc:
        failures.append(str(exc))
    finally:
        failures += project.stop() if last else []
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
