"""Find the shell blocks of README.md and docs/*.md and run them the way a learner would.

Each fenced block is classified by its info string:

- ``bash``/``sh``/``shell``/``console`` blocks run, command by command, in order, in one fresh
  project folder per file (``.venv`` there is the project's venv, on ``PATH`` as after
  ``source .venv/bin/activate``). A new block without annotation runs: docs cannot drift silently.
- Other languages (``text``, ``json``, ``yaml``, ``python``, ``cron``, ...) are not shell.
- A block without a language is an error: the harness cannot tell a command from a diagram.

Annotations follow the language: ```` ```bash docs-harness: slow timeout=900 ````.

- ``slow``: run only when ``DEPLOY_DOCS_SLOW=1`` (``.ci/run`` sets it); otherwise a visible skip.
- ``docker``: needs a Docker engine; runs in the ``docker`` suite (``pytest -m docker``).
- ``skip=REASON``: never run; ``REASON`` must be a key of ``SKIPS`` (each says why).
- ``timeout=SECONDS``: per command (default ``DEFAULT_TIMEOUT``).

Servers and followers (``deploy web``, ``deploy stream``, ``deploy stream tail``, ``logs -f``)
are recognised by ``SERVERS``: they start in the background, the harness waits for their ready
line, and they are stopped with Ctrl-C (SIGINT) when the file is done and must exit cleanly.
The well-known ports are replaced by free ones (``PORTS``) in the commands and the environment,
so the docs can say ``localhost:9696`` while the harness shares the machine. Likewise the
default compose project names (``deploy-web``) become those of the test prefix the environment
sets (``DEPLOY_COMPOSE_PROJECT_PREFIX``), so a docs block never touches a user's stacks.

Output the text promises is checked: a comment line ``# -> TEXT`` after a command, or a
``console`` block's lines after ``$ command``, must appear in the command's output (``...``
matches anything, spacing is ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy_modes.compose.settings import DEFAULT_PROJECT_PREFIX
from deploy_modes.compose.stack import MODES

__all__ = [
    "DEFAULT_TIMEOUT",
    "PORTS",
    "PREFIX_VAR",
    "SERVERS",
    "SKIPS",
    "Block",
    "Command",
    "DocsError",
    "Project",
    "doc_files",
    "expected_pattern",
    "is_server",
    "parse_blocks",
]

SHELL_LANGS = {"bash", "sh", "shell", "console"}
OTHER_LANGS = {"text", "json", "yaml", "python", "cron", "toml", "ini", "dockerfile", "sql"}
ANNOTATION = "docs-harness:"
FLAGS = {"slow", "docker"}
DEFAULT_TIMEOUT = 600.0
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0

# Blocks the harness never runs, each with the reason a reader of the test report sees.
SKIPS = {
    "aws-cli": "needs the AWS CLI, which is not a dependency of this project; "
    "`deploy stream send` and `deploy stream tail` (run above) do the same",
    "suite": "runs the test suite (or part of it), which .ci/run runs; this harness is in it",
    "cluster": "needs a running Dask scheduler at tcp://scheduler:8786 (a host named scheduler)",
    "remote-db": "needs a PostgreSQL server named db with user u",
    "remote-s3": "writes to an S3 bucket that exists only in the reader's account",
    "container": "the container's own command: needs the model at /model, the image's mount",
    "classroom": "the same command runs in docs/classroom.md's block, with a scenario and the "
    "report",
    "course-file": "needs the course's lin_reg.bin, downloaded from the course's repository",
    "mutation": "mutation testing: re-installs the package into the venv (from this temp copy) "
    "and runs for minutes to hours per module; docs/testing.md says it is not part of .ci/run",
}

# Commands that keep running: (pattern of the command, pattern of its ready line).
SERVERS = [
    # `deploy web predict` and `deploy web reload` talk to a running server and exit.
    (
        re.compile(r"^deploy web(?!\s+(predict|reload)\b)(?!.*--runtime\s+compose)"),
        re.compile(r"ready at"),
    ),
    (
        re.compile(r"^deploy stream tail(?!.*--no-follow)(?!.*--limit)"),
        re.compile(r'"prediction"|"error"'),
    ),
    (
        re.compile(r"^deploy stream(\s+consume)?(?!\s+(init|send|tail))(?!.*--runtime\s+compose)"),
        # A consumer is up once it runs; a third member of a group on two shards holds none.
        re.compile(r"reading shardId|\(dead letters: "),
    ),
    (re.compile(r"^deploy logs\b.*(\s-f\b|--follow)"), re.compile(r".")),
    # `deploy classroom scenario|report` talk to a running classroom and exit.
    (re.compile(r"^deploy classroom(?!\s+(scenario|report)\b)"), re.compile(r"classroom ready")),
]

# Commands that need a Docker engine: their block must be flagged ``docker``.
_NEEDS_DOCKER = re.compile(r"--runtime[\s=]+compose\b|^(docker|docker-compose)\s")

# Asking for help or the version runs and exits, whatever the command (`deploy stream tail -h`).
_ONE_SHOT = re.compile(r"\s(-h|--help|--version)\b")


def is_server(text: str) -> bool:
    """Return whether the command keeps running (a SERVERS pattern, and not a help request)."""
    return not _ONE_SHOT.search(text) and any(pattern.search(text) for pattern, _ in SERVERS)


# Well-known ports the docs show, and the environment that makes the commands use the free one.
PORTS = {
    9696: ("DEPLOY_WEB_PORT", "DEPLOY_WEB_URL", "http://127.0.0.1:{port}"),
    4566: ("", "DEPLOY_STREAM_ENDPOINT_URL", "http://127.0.0.1:{port}"),
    8000: ("", "", ""),  # docs/web.md's second server: only the text changes
    8800: ("DEPLOY_CLASSROOM_PORT", "", ""),  # the classroom page
}


# The compose project names the docs show: `deploy-<mode>`, the default prefix's (compose/stack.py).
_PROJECT = re.compile(rf"\b{DEFAULT_PROJECT_PREFIX}-(?=(?:{'|'.join(MODES)})\b)")
PREFIX_VAR = "DEPLOY_COMPOSE_PROJECT_PREFIX"


class DocsError(Exception):
    """A block the harness cannot classify, or a command that did not do what the text says."""


@dataclass
class Command:
    """One logical command (continuation lines joined) and the output the text promises."""

    text: str
    line: int  # of its first line in the markdown file
    expect: list[str] = field(default_factory=list)


@dataclass
class Block:
    """One fenced block: where it is, what it is, and its commands if it is shell."""

    path: Path
    line: int  # of the opening fence
    lang: str
    flags: set[str]
    skip: str | None
    timeout: float
    commands: list[Command]

    @property
    def where(self) -> str:
        """Return ``file:line`` of the opening fence, relative to the repository."""
        return f"{_name(self.path)}:{self.line}"

    @property
    def runs(self) -> bool:
        """Return whether the block is shell the harness executes."""
        return self.lang in SHELL_LANGS


def doc_files(root: Path) -> list[Path]:
    """Return README.md and docs/*.md, in reading order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def parse_blocks(path: Path) -> list[Block]:
    """Return every fenced block of ``path``, refusing one the harness cannot classify."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^(`{3,}|~{3,})(.*)$", lines[index])
        if not fence:
            index += 1
            continue
        start = index + 1
        end = start
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        blocks.append(_block(path, index + 1, fence.group(2).strip(), lines[start:end], start + 1))
        index = end + 1
    return blocks


def _name(path: Path) -> str:
    return f"docs/{path.name}" if path.parent.name == "docs" else path.name


def _block(path: Path, line: int, info: str, body: list[str], first: int) -> Block:
    where = f"{_name(path)}:{line}"
    lang, _, rest = info.partition(" ")
    lang = lang.lower()
    if not lang:
        raise DocsError(
            f"{where}: a fenced block without a language: write ```bash (the harness runs it) "
            "or ```text (output, diagrams)"
        )
    if lang not in SHELL_LANGS | OTHER_LANGS:
        raise DocsError(f"{where}: unknown block language {lang!r}")
    flags: set[str] = set()
    skip = None
    timeout = DEFAULT_TIMEOUT
    rest = rest.strip()
    if rest:
        if not rest.startswith(ANNOTATION):
            raise DocsError(f"{where}: info string {info!r}: annotate with '{ANNOTATION} ...'")
        for word in shlex.split(rest[len(ANNOTATION) :]):
            key, _, value = word.partition("=")
            if word in FLAGS:
                flags.add(word)
            elif key == "skip" and value in SKIPS:
                skip = value
            elif key == "timeout" and value.replace(".", "", 1).isdigit():
                timeout = float(value)
            else:
                raise DocsError(
                    f"{where}: unknown annotation {word!r}: use {', '.join(sorted(FLAGS))}, "
                    f"timeout=SECONDS or skip=ONE_OF({', '.join(SKIPS)})"
                )
    commands = []
    if lang in SHELL_LANGS:
        try:
            commands = _commands(body, first, console=lang == "console")
        except DocsError as exc:
            raise DocsError(f"{_name(path)}: {exc}") from None
    if skip is None and "docker" not in flags:
        for command in commands:
            if _NEEDS_DOCKER.search(command.text.partition(" #")[0]):
                # Unflagged, it would run in the default suite, where no engine answers.
                raise DocsError(
                    f"{_name(path)}:{command.line}: {command.text!r} needs a Docker engine: "
                    f"annotate the block '{ANNOTATION} docker'"
                )
    return Block(path, line, lang, flags, skip, timeout, commands)


def _commands(body: list[str], first: int, console: bool) -> list[Command]:
    commands: list[Command] = []
    pending: Command | None = None
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if pending is not None and pending.text.endswith("\\"):
            pending.text = pending.text[:-1].rstrip() + " " + line.strip()
            continue
        stripped = line.strip()
        if console:
            if stripped.startswith("$ "):
                pending = Command(stripped[2:], first + offset)
                commands.append(pending)
            elif stripped and pending is not None:
                pending.expect.append(stripped)
            continue
        if not stripped:
            continue
        promise = re.match(r"^#\s*(->|→)\s*(.*)$", stripped)
        if promise:
            if pending is None:
                raise DocsError(f"line {first + offset}: an output promise before any command")
            pending.expect.append(promise.group(2))
        elif stripped.startswith("#"):
            continue
        else:
            pending = Command(stripped, first + offset)
            commands.append(pending)
    return commands


def expected_pattern(text: str) -> re.Pattern[str]:
    """Return the pattern of a promised output line: ``...`` is anything; spacing is ignored."""
    return re.compile(r".*?".join(re.escape(_normal(part)) for part in text.split("...")))


def _normal(output: str) -> str:
    return "".join(output.split())  # rich pads and wraps; the promise is about the words


@dataclass
class _Server:
    command: Command
    where: str
    process: subprocess.Popen[bytes]
    log: Path


class Project:
    """A fresh project folder a learner works in: the repository's files, its venv, free ports."""

    def __init__(self, folder: Path, repo: Path, venv: Path, link_venv: bool = True) -> None:
        """Copy the repository into ``folder``; link ``venv`` as its ``.venv`` unless told not to.

        ``link_venv=False`` leaves ``.venv`` to the docs' own set-up command (the quick start).
        """
        self.folder = folder
        self.servers: list[_Server] = []
        self.ports = {known: _free_port() for known in PORTS}
        bin_dir = folder / ".venv" / "bin"  # as after `source .venv/bin/activate`
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(folder / ".venv"),
            "COLUMNS": "200",  # rich wraps at the terminal width: keep promised lines whole
            "NO_COLOR": "1",
            "TERM": "dumb",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PYTHONPATH", None)
        for known, port in self.ports.items():
            port_var, url_var, url = PORTS[known]
            if port_var:
                self.env[port_var] = str(port)
            if url_var:
                self.env[url_var] = url.format(port=port)
        _copy_tracked(repo, folder)
        if link_venv:
            (folder / ".venv").symlink_to(venv)

    def substitute(self, text: str) -> str:
        """Return ``text`` with the well-known ports and project names replaced by this run's."""
        for known, port in self.ports.items():
            text = re.sub(rf"(?<=[:=]){known}\b", str(port), text)
        prefix = self.env.get(PREFIX_VAR)
        if prefix:
            text = _PROJECT.sub(f"{prefix}-", text)
        return text

    def run(self, block: Block) -> None:
        """Run every command of ``block``, raising DocsError with file:line on the first miss."""
        for command in block.commands:
            where = f"{block.where} (command at line {command.line})"
            if is_server(command.text):
                self._start(command, where)
            else:
                self._run(command, where, block.timeout)

    def _run(self, command: Command, where: str, timeout: float) -> None:
        text = self.substitute(command.text)
        process = subprocess.Popen(
            ["bash", "-o", "pipefail", "-c", text],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            raw, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raw, _ = process.communicate()
            raise DocsError(
                f"{where}: `{command.text}` still ran after {timeout:.0f}s"
                + _tail(raw.decode(errors="replace"))
            ) from None
        output = raw.decode(errors="replace")
        if process.returncode != 0:
            raise DocsError(
                f"{where}: `{command.text}` exited with code {process.returncode}" + _tail(output)
            )
        self._check_promises(command, output, where)

    def _start(self, command: Command, where: str) -> None:
        log = self.folder / f".docs-harness-{len(self.servers)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {self.substitute(command.text)}"],
                cwd=self.folder,
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = _Server(command, where, process, log)
        self.servers.append(server)
        ready = next(ready for pattern, ready in SERVERS if pattern.search(command.text))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            output = log.read_text(errors="replace")
            if ready.search(output):
                self._check_promises(command, output, where)
                return
            if process.poll() is not None:
                raise DocsError(
                    f"{where}: `{command.text}` (run in the background) exited with code "
                    f"{process.returncode} before its ready line /{ready.pattern}/" + _tail(output)
                )
            time.sleep(0.2)
        raise DocsError(
            f"{where}: `{command.text}` printed no ready line /{ready.pattern}/ within "
            f"{READY_TIMEOUT:.0f}s" + _tail(log.read_text(errors="replace"))
        )

    def _check_promises(self, command: Command, output: str, where: str) -> None:
        normal = _normal(output)
        for promise in command.expect:
            if not expected_pattern(self.substitute(promise)).search(normal):
                raise DocsError(
                    f"{where}: `{command.text}`: the text promises {promise!r}, "
                    "the output lacks it" + _tail(output)
                )

    def stop(self) -> list[str]:
        """Ctrl-C every background command, last started first; return the ones that failed."""
        failures = []
        for server in reversed(self.servers):
            process = server.process
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    _kill(process)
                    failures.append(
                        f"{server.where}: `{server.command.text}` ignored Ctrl-C for "
                        f"{STOP_TIMEOUT:.0f}s" + _tail(server.log.read_text(errors="replace"))
                    )
                    continue
            if process.returncode not in (0, 130, -signal.SIGINT):
                failures.append(
                    f"{server.where}: `{server.command.text}` exited with code "
                    f"{process.returncode} after Ctrl-C"
                    + _tail(server.log.read_text(errors="replace"))
                )
        self.servers.clear()
        return failures


def _tail(output: str, lines: int = 25) -> str:
    kept = output.rstrip().splitlines()[-lines:]
    return "\n--- output (last lines) ---\n" + "\n".join(kept) if kept else "\n(no output)"


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _free_port() -> int:
    from deploy_modes.launch.processes import free_port

    return free_port()


def _copy_tracked(repo: Path, folder: Path) -> None:
    """Copy the files git tracks (as they are in the work tree): a fresh clone's content."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if not source.is_file():
            continue  # deleted in the work tree, not yet committed
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)


def iter_runnable(root: Path) -> Iterator[Block]:
    """Yield every shell block of the docs, in reading order."""
    for path in doc_files(root):
        yield from (block for block in parse_blocks(path) if block.runs)


if __name__ == "__main__":  # list how the harness classifies each block
    for block in iter_runnable(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        kind = block.skip or ",".join(sorted(block.flags)) or "run"
        print(f"{block.where:28} {kind:10} {len(block.commands)} command(s)")
