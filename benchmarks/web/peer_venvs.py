"""One venv per peer server, created on demand outside the repository and reused.

A venv is named by its peer and a hash of what goes into it (the requirement file, the
scikit-learn pin and the interpreter), so editing a pin makes a new venv instead of reusing a
stale one. The peers need the scikit-learn that trained the model to unpickle it: that pin is
read from ``constraints.txt``, the one place it is written.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["PEERS_DIR", "VENV_ROOT", "peer_python"]

PEERS_DIR = Path(__file__).resolve().parent / "peers"
CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"
VENV_ROOT = Path(
    os.environ.get("DEPLOY_BENCH_VENVS", Path.home() / ".cache/deploy-modes/bench-venvs")
)
_SHARED_PINS = ("scikit-learn",)  # the model's own library: the version that pickled it
_DONE = ".installed"  # written last: a venv whose install was interrupted is rebuilt


def peer_python(peer: str, log: Callable[[str], None] = print) -> Path:
    """Return the Python of ``peer``'s venv, creating and installing it first if needed."""
    requirements = PEERS_DIR / f"requirements-{peer}.txt"
    pins = _shared_pins()
    digest = hashlib.sha256(
        "\n".join([requirements.read_text(), *pins, sys.version]).encode()
    ).hexdigest()[:12]
    venv = VENV_ROOT / f"{peer}-{digest}"
    python = venv / "bin" / "python"
    if (venv / _DONE).is_file():
        return python
    log(f"creating the {peer} venv in {venv} (once; a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = [str(python), "-m", "pip", "install", "-q", "-r", str(requirements), *pins]
    subprocess.run(install, check=True)
    (venv / _DONE).write_text(" ".join(install[4:]) + "\n")
    return python


def _shared_pins() -> list[str]:
    wanted = {name.lower() for name in _SHARED_PINS}
    pins = [
        line.strip()
        for line in CONSTRAINTS.read_text().splitlines()
        if line.partition("==")[0].strip().lower() in wanted
    ]
    if len(pins) != len(wanted):
        raise SystemExit(f"{CONSTRAINTS} does not pin all of {', '.join(sorted(wanted))}")
    return pins


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(peer_python(name))
