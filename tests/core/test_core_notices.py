"""Warnings as one line, once per process: checked in a real child process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from deploy_modes.core.artifact import MANIFEST_FILE

CHILD = """
import sys
from deploy_modes.core.notices import show_warnings_as_lines
from deploy_modes.core.artifact import load_model
show_warnings_as_lines()
load_model(sys.argv[1])
load_model(sys.argv[1])  # a second load says nothing new
import warnings
warnings.warn("two\\nlines")
"""


def test_a_version_mismatch_is_one_warning_line_once(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["sklearn_version"] = "0.24.2"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith("warning: ") and "scikit-learn==0.24.2" in lines[0]
    assert lines[1] == "warning: two lines"
    assert "warnings.warn" not in done.stderr and "UserWarning" not in done.stderr
