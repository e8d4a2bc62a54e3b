"""gunicorn says a model's version warning as one ``warning:`` line, once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deploy_modes.core.artifact import MANIFEST_FILE
from deploy_modes.launch.processes import ManagedProcess, free_port, wait_http
from deploy_modes.launch.web import GUNICORN_ARGS


@pytest.mark.integration
def test_gunicorn_prints_a_version_mismatch_once_as_one_line(
    model_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["sklearn_version"] = "0.24.2"
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    port = free_port()
    env = {
        "DEPLOY_MODEL_LOCATION": str(copy),
        "DEPLOY_WEB_HOST": "127.0.0.1",
        "DEPLOY_WEB_PORT": str(port),
        "DEPLOY_WEB_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "gunicorn.log"
    with ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log) as process:
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=90, process=process)
    text = log.read_text()
    warnings = [line for line in text.splitlines() if "scikit-learn==0.24.2" in line]
    assert len(warnings) == 1, text
    assert warnings[0].startswith("warning: "), text
    assert "UserWarning" not in text and "warnings.warn" not in text, text
