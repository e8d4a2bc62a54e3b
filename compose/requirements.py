"""Print the pip requirements of the project's dependency groups, read from pyproject.toml.

Used inside ``docker build`` so each image layer installs one group (the shared base layer:
``core cli build``; then one mode's extra) while pyproject.toml stays the single source.
Self-references such as ``deploy-modes[data,aws]`` are expanded; versions come from
``constraints.txt`` (pip ``-c``). Runs on a bare ``python3`` (tomllib, no third-party import).

Usage: python3 requirements.py PYPROJECT GROUP... (GROUP: core, build, or an extra name)
"""

from __future__ import annotations

import re
import sys
import tomllib

__all__ = ["requirements"]

_SELF = re.compile(r"^deploy-modes\[(?P<extras>[^\]]+)\]$")


def requirements(pyproject: dict, groups: list[str]) -> list[str]:
    """Return the requirement lines of ``groups``, self-references expanded, in first-seen order."""
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    seen: list[str] = []
    pending = list(groups)
    visited: set[str] = set()
    while pending:
        group = pending.pop(0)
        if group in visited:
            continue
        visited.add(group)
        if group == "core":
            lines = project.get("dependencies", [])
        elif group == "build":
            lines = pyproject.get("build-system", {}).get("requires", [])
        elif group in extras:
            lines = extras[group]
        else:
            known = ", ".join(["core", "build", *extras])
            raise SystemExit(f"unknown dependency group {group!r} (known: {known})")
        for line in lines:
            match = _SELF.match(line.replace(" ", ""))
            if match:
                pending.extend(match["extras"].split(","))
            elif line not in seen:
                seen.append(line)
    return seen


def main(argv: list[str]) -> None:
    """Print one requirement per line for the groups named on the command line."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    with open(argv[0], "rb") as handle:
        pyproject = tomllib.load(handle)
    print("\n".join(requirements(pyproject, argv[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])
