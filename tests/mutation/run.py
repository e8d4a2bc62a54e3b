"""Mutate one module with cosmic-ray: `python tests/mutation/run.py core/scoring`.

The copy (build/mutation/<area>_<module>/src) is what gets mutated, so the work tree stays
untouched while a run takes its 15-25 minutes. A shim folder maps `deploy_modes.<pkg>` onto the
copy's folders the way pyproject's package-dir maps them onto the tree's, and the runner checks
that the copy, not the editable install, is what the tests import before it mutates anything:
a run that tested the wrong files would report every mutant as surviving (or worse, killed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "mutation"
BIN = Path(sys.executable).parent


def _settings() -> tuple[dict, dict]:
    """Return pyproject's [tool.mutation] table and its package-dir mapping."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["mutation"], pyproject["tool"]["setuptools"]["package-dir"]


def _copy_tree(src: Path) -> None:
    """Copy the tracked and new (not ignored) files of the work tree into `src`."""
    if src.exists():
        shutil.rmtree(src)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        origin = ROOT / name
        if origin.is_file():
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def _shim(run_dir: Path, src: Path, package_dir: dict[str, str]) -> Path:
    """Build a folder where `deploy_modes.<pkg>` resolves to the copy's `<folder>`."""
    shim = run_dir / "path"
    if shim.exists():
        shutil.rmtree(shim)
    for dotted, folder in package_dir.items():
        link = shim.joinpath(*dotted.split("."))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src / folder, target_is_directory=True)
    return shim


def _check_imports(module: str, src: Path, env: dict[str, str], package_dir: dict) -> None:
    """Fail unless the tests would import `module` from the copy."""
    folder, _, name = module.partition("/")
    dotted = next(k for k, v in package_dir.items() if v == folder) + "." + name
    found = subprocess.run(
        [sys.executable, "-c", f"import {dotted} as m; print(m.__file__)"],
        cwd=src,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if Path(found).resolve() != (src / f"{module}.py").resolve():
        sys.exit(f"error: {dotted} imports from {found}, not from the copy in {src}")


def _write_config(run_dir: Path, module: str, tool: dict, worker_urls: list[str]) -> Path:
    """Write the cosmic-ray config for `module` from pyproject's [tool.mutation].

    With `worker_urls`, the mutants go to those http workers (one copy of the tree each) instead
    of being run one at a time in `src`.
    """
    entry = tool["modules"][module]
    tests = " ".join(entry["tests"])
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"
    config = run_dir / "cosmic-ray.toml"
    lines = [
        "[cosmic-ray]",
        f'module-path = "{module}.py"',
        f"timeout = {float(entry.get('timeout', tool['timeout']))}",
        "excluded-modules = []",
        f"test-command = {json.dumps(command)}",
        "",
        "[cosmic-ray.distributor]",
        f"name = {json.dumps('http' if worker_urls else 'local')}",
        "",
        "[cosmic-ray.distributor.http]",
        f"worker-urls = {json.dumps(worker_urls)}",
        "",
        "[cosmic-ray.filters.operators-filter]",
        f"exclude-operators = {json.dumps(tool['exclude-operators'])}",
        "",
    ]
    config.write_text("\n".join(lines))
    return config


def _check_unmutated(module: str, src: Path) -> None:
    """Fail unless the copy's module is the work tree's: a resumed run mutates that text.

    The session's mutants are positions in the module as it was when the run began; a module
    edited since, or a copy left with an interrupted mutant applied, would give wrong results.
    """
    copy, tree = src / f"{module}.py", ROOT / f"{module}.py"
    if copy.read_bytes() != tree.read_bytes():
        sys.exit(
            f"error: {copy} differs from {tree}: the module changed since this run began"
            " (start a new run), or an interrupted mutant is still applied to the copy"
            " (copy the module back over it)"
        )


def _free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _workers(
    module: str, run_dir: Path, src: Path, package_dir: dict[str, str], count: int
) -> Iterator[list[str]]:
    """Start `count` http workers, each in its own copy of `src`; yield their URLs."""
    processes, urls = [], []
    try:
        for index in range(count):
            home = run_dir / "workers" / f"w{index}"
            copy = home / "src"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(src, copy, symlinks=True)
            shim = _shim(home, copy, package_dir)
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(shim))
            # Tests name their PostgreSQL tables: each worker gets a database of its own.
            env["DEPLOY_TEST_DATABASE_SUFFIX"] = f"mutation_w{index}"
            _check_imports(module, copy, env, package_dir)
            port = _free_port()
            worker = Path(__file__).with_name("worker.py")
            command = [sys.executable, str(worker), "serve", str(port)]
            processes.append(subprocess.Popen(command, cwd=copy, env=env))
            urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(urls, processes, strict=True):
            port = int(url.rsplit(":", 1)[1])
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    sys.exit(f"error: the worker for {url} exited with {process.returncode}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit(f"error: the worker for {url} did not listen within 60 s")
                    time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            _kill_tree(process.pid)
            process.wait(timeout=30)


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and every process under it.

    cosmic-ray starts each mutant's tests in a session of their own, so they would outlive
    their worker. The copies are scratch and an unfinished mutant stays pending in the
    session, so nothing is lost by killing a worker in the middle of one.
    """
    import psutil

    try:
        worker = psutil.Process(pid)
        family = [*worker.children(recursive=True), worker]
    except psutil.NoSuchProcess:
        return
    for process in family:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(family, timeout=30)


def _summary(run_dir: Path, src: Path, session: Path) -> dict:
    """Count outcomes from the session and write the survivors' diffs to survivors.txt."""
    dump = subprocess.run(
        [BIN / "cosmic-ray", "dump", session], cwd=src, check=True, capture_output=True, text=True
    ).stdout
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "skipped": 0}
    survivors = []
    for line in filter(None, dump.splitlines()):
        item, result = json.loads(line)
        if result is None:
            counts.setdefault("pending", 0)
            counts["pending"] += 1
            continue
        if result["worker_outcome"] == "skipped":
            counts["skipped"] += 1
        elif result["worker_outcome"] != "normal":
            counts["incompetent"] += 1
        elif result["test_outcome"] == "survived":
            counts["survived"] += 1
            mutation = item["mutations"][0]
            survivors.append(
                f"## {item['job_id']} {mutation['operator_name']} #{mutation['occurrence']} "
                f"line {mutation['start_pos'][0]}\n{result['diff']}"
            )
        elif result["output"] == "timeout":
            counts["timeout"] += 1
        else:
            counts["killed"] += 1
    (run_dir / "survivors.txt").write_text("\n".join(survivors))
    return counts


def main(argv: list[str] | None = None) -> int:
    """Mutate one module, run its tests against each mutant, print the score."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a module path without .py, e.g. core/scoring")
    parser.add_argument("--resume", action="store_true", help="continue the last session")
    parser.add_argument("--report", action="store_true", help="only print the last session")
    parser.add_argument("--count", action="store_true", help="only create the mutants, run none")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="mutants tested at once, each in its own copy of the tree (default 1)",
    )
    args = parser.parse_args(argv)
    # SIGTERM ends the run the way Ctrl-C does: through the `finally` that stops the workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tool, package_dir = _settings()
    module = args.module.removesuffix(".py")
    if module not in tool["modules"]:
        sys.exit(f"error: {module} has no entry in pyproject's [tool.mutation.modules]")
    if args.workers < 1:
        sys.exit(f"error: --workers must be 1 or more, not {args.workers}")
    run_dir = BUILD / module.replace("/", "_")
    src, session = run_dir / "src", run_dir / "session.sqlite"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if not args.resume and not args.report:
        run_dir.mkdir(parents=True, exist_ok=True)
        session.unlink(missing_ok=True)
        _copy_tree(src)
    if args.report:
        if not session.exists():
            sys.exit(f"error: no run of {module} yet ({session} is missing)")
    else:
        _check_unmutated(module, src)
        env["PYTHONPATH"] = str(_shim(run_dir, src, package_dir))
        _check_imports(module, src, env, package_dir)
        config = _write_config(run_dir, module, tool, [])
    started = time.monotonic()
    if not args.resume and not args.report:
        run = {"cwd": src, "env": env, "check": True}
        subprocess.run([BIN / "cosmic-ray", "init", config, session], **run)
        subprocess.run([BIN / "cr-filter-operators", session, config], **run)
        if args.count:
            counts = _summary(run_dir, src, session)
            print(f"{module}: {counts.get('pending', 0)} mutants, {counts['skipped']} filtered out")
            return 0
        # The unmutated tests must pass here first, or every mutant would count as killed.
        baseline = subprocess.run(
            [BIN / "cosmic-ray", "baseline", config], cwd=src, env=env, check=False
        )
        if baseline.returncode != 0:
            sys.exit("error: the tests fail on the unmutated copy; no mutant was run")
    if not args.report and args.workers == 1:
        subprocess.run([BIN / "cosmic-ray", "exec", config, session], cwd=src, env=env, check=True)
    elif not args.report:
        with _workers(module, run_dir, src, package_dir, args.workers) as urls:
            config = _write_config(run_dir, module, tool, urls)
            worker = Path(__file__).with_name("worker.py")
            subprocess.run(
                [sys.executable, worker, "exec", config, session], cwd=src, env=env, check=True
            )
    counts = _summary(run_dir, src, session)
    judged = counts["killed"] + counts["timeout"] + counts["survived"]
    if not judged:
        sys.exit(f"error: no mutant of {module} has run yet ({counts.get('pending', 0)} pending)")
    score = 100 * (counts["killed"] + counts["timeout"]) / judged
    print(
        f"{module}: {score:.1f}% killed ({counts['killed']} killed + {counts['timeout']} timeouts"
        f" of {judged} mutants; {counts['survived']} survived, {counts['incompetent']} incompetent,"
        f" {counts['skipped']} filtered out, {counts.get('pending', 0)} pending)"
        f" in {time.monotonic() - started:.0f}s;"
        f" survivors: {(run_dir / 'survivors.txt').relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
