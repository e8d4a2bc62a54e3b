"""The ``deploy`` command: one typer app per mode, composed in :mod:`deploy_modes.cli.main`."""

import sys

# Checked before any module of ours is imported: an older Python would fail on 3.11-only
# syntax or library names with a traceback instead of saying what is wrong.
REQUIRED_PYTHON = (3, 11)

if sys.version_info < REQUIRED_PYTHON:
    sys.exit(
        f"deploy-modes requires Python {'.'.join(map(str, REQUIRED_PYTHON))}+ "
        f"(this is {sys.version_info[0]}.{sys.version_info[1]})"
    )
