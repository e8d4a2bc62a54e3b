"""The harness itself: it refuses blocks it cannot classify and fails where the docs are wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from docs_harness import (
    PREFIX_VAR,
    SKIPS,
    DocsError,
    Project,
    doc_files,
    expected_pattern,
    is_server,
    parse_blocks,
)

REPO = Path(__file__).resolve().parents[2]


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(text)
    return path


def test_a_block_without_a_language_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _doc(tmp_path, "# t\n\n```\ndeploy web\n```\n")
    with pytest.raises(DocsError, match=r"README.md:3: a fenced block without a language"):
        parse_blocks(path)


@pytest.mark.parametrize("info", ["bash docs-harness: fast", "bash docs-harness: skip=whim"])
def test_an_unknown_annotation_is_refused(tmp_path: Path, info: str) -> None:
    with pytest.raises(DocsError, match="unknown annotation"):
        parse_blocks(_doc(tmp_path, f"```{info}\ndeploy web\n```\n"))


@pytest.mark.parametrize(
    "command", ["deploy batch --runtime compose --engine dask", "docker compose ps"]
)
def test_a_command_needing_docker_outside_a_docker_block_is_refused(
    tmp_path: Path, command: str
) -> None:
    with pytest.raises(DocsError, match=r"README.md:2: .* needs a Docker engine"):
        parse_blocks(_doc(tmp_path, f"```bash\n{command}\n```\n"))
    (block,) = parse_blocks(_doc(tmp_path, f"```bash docs-harness: docker\n{command}\n```\n"))
    assert block.flags == {"docker"}


def test_an_unannotated_block_runs_and_continuations_join(tmp_path: Path) -> None:
    text = "```bash\n# a comment\ndeploy web predict \\\n  --pu 10\n# -> predicted ...\n```\n"
    (block,) = parse_blocks(_doc(tmp_path, text))
    assert block.runs and not block.flags and block.skip is None
    assert [(c.text, c.line, c.expect) for c in block.commands] == [
        ("deploy web predict --pu 10", 3, ["predicted ..."])
    ]


def test_console_blocks_promise_their_output_lines(tmp_path: Path) -> None:
    (block,) = parse_blocks(_doc(tmp_path, "```console\n$ echo hi\nhi\n```\n"))
    assert [(c.text, c.expect) for c in block.commands] == [("echo hi", ["hi"])]


def test_promises_ignore_spacing_and_dots_match_anything() -> None:
    pattern = expected_pattern('{"duration": 196.17, "model_version": "..."}')
    assert pattern.search('{"duration":196.17,"model_version":"f36591f05eb6"}'.replace(" ", ""))
    assert not pattern.search('{"duration":22.6,"model_version":"f36591f05eb6"}')


def _project(tmp_path: Path) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, REPO, Path(sys.prefix))


def test_a_failing_command_names_its_line_and_output(tmp_path: Path) -> None:
    text = "intro\n\n```bash\ntrue\necho oops; exit 3\n```\n"
    (block,) = parse_blocks(_doc(tmp_path, text))
    with pytest.raises(DocsError) as caught:
        _project(tmp_path).run(block)
    message = str(caught.value)
    assert "README.md:3 (command at line 5): `echo oops; exit 3` exited with code 3" in message
    assert message.rstrip().endswith("oops")


def test_a_broken_promise_shows_expected_and_got(tmp_path: Path) -> None:
    (block,) = parse_blocks(_doc(tmp_path, "```bash\necho 196.17\n# -> 22.6\n```\n"))
    with pytest.raises(DocsError, match=r"promises '22.6', the output lacks it\n.*\n196.17"):
        _project(tmp_path).run(block)


def test_well_known_ports_become_free_ones(tmp_path: Path) -> None:
    project = _project(tmp_path)
    free = project.ports[9696]
    assert project.substitute("curl localhost:9696/predict") == f"curl localhost:{free}/predict"
    assert project.env["DEPLOY_WEB_PORT"] == str(free) != "9696"


def test_default_project_names_become_the_test_prefixs(tmp_path: Path) -> None:
    project = _project(tmp_path)
    prefix = project.env[PREFIX_VAR]  # tests/conftest.py's: never a user's `deploy`
    assert prefix.startswith("deploy-test-")
    shown = "docker-compose -p deploy-web up  # -> deploy-stream: removed; deploy-modes/web"
    assert project.substitute(shown) == (
        f"docker-compose -p {prefix}-web up  # -> {prefix}-stream: removed; deploy-modes/web"
    )


def test_the_projects_deploy_is_the_venvs(tmp_path: Path) -> None:
    text = "```bash\ncommand -v deploy\n# -> /.venv/bin/deploy\n```\n"
    (block,) = parse_blocks(_doc(tmp_path, text))
    _project(tmp_path).run(block)


def test_every_skip_reason_is_used_by_some_block() -> None:
    """A reason no block needs any more is a hole a new block could slip through unseen."""
    used = {block.skip for path in doc_files(REPO) for block in parse_blocks(path)}
    assert set(SKIPS) <= used, sorted(set(SKIPS) - used)


def test_the_readme_activates_the_venv_before_its_first_bare_deploy() -> None:
    """The learner's `bash: deploy: command not found` (issue 16)."""
    commands = [
        command.text
        for block in parse_blocks(REPO / "README.md")
        if block.runs
        for command in block.commands
    ]
    first_bare = next(i for i, text in enumerate(commands) if text.startswith("deploy "))
    assert "source .venv/bin/activate" in commands[:first_bare]


def test_the_makefile_has_the_usual_targets_one_line_each() -> None:
    recipes: dict[str, list[str]] = {}
    target = ""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("\t"):
            recipes[target].append(line.strip())
        elif line and not line.startswith(("#", ".")) and line.endswith(":"):
            target = line[:-1]
            recipes[target] = []
    for name in ("setup", "test", "compare", "docker-test", "bench"):
        assert len(recipes.get(name, [])) == 1, name
        assert f"make {name}" in (REPO / "README.md").read_text()


def test_ci_runs_the_documented_ci_script() -> None:
    workflow = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: bash .ci/run" in workflow and "debian:12" in workflow


def test_a_help_request_is_never_taken_for_a_server() -> None:
    assert is_server("deploy stream tail")
    assert is_server("deploy web --port 9696")
    assert not is_server("deploy stream tail -h     # any command")
    assert not is_server("deploy web --help")
    assert not is_server("deploy stream --version")


def test_commands_that_talk_to_a_running_server_are_not_servers() -> None:
    assert not is_server("deploy web predict --pu 10")
    assert not is_server("deploy web reload --url localhost:9696 --model models/ride-duration")
    assert is_server("deploy web --model models/ride-duration")
