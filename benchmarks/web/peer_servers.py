"""Start and stop the peer servers a user would pick instead of ours: MLServer, BentoML, MLflow.

Each runs from its own venv (``peer_venvs.py``) on a free loopback port with the worker count
given, serving the benchmark's own pickled pipeline from a copy of its definition in
``peers/``. A peer is ready when it answers one ride; it is refused unless that answer equals
ours (``TOLERANCE``), so every peer in the table computes the same thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from peer_venvs import PEERS_DIR, peer_python

from deploy_modes.compare.agreement import TOLERANCE
from deploy_modes.launch.processes import ManagedProcess, free_port

__all__ = ["PEERS", "PeerError", "PeerServer", "start_peer"]

READY_TIMEOUT_S = 180.0  # MLServer's first start compiles and spawns its inference workers
MLSERVER_MODEL = "ride-duration"  # the name in peers/model-settings.json
_DEFINITIONS = ("ride_features.py",)


class PeerError(RuntimeError):
    """A peer would not start, or answered a ride differently from ours."""


@dataclass(frozen=True)
class PeerSpec:
    """How one peer is installed, started, asked and read."""

    venv: str  # which peers/requirements-<venv>.txt
    files: tuple[str, ...]  # its definition in peers/, copied next to the model
    path: str
    request_format: str
    body: Callable[[dict[str, Any]], dict[str, Any]]
    answer: Callable[[dict[str, Any]], float]
    workers: Callable[[int], int] = lambda ours: ours


def _v2_body(ride: dict[str, Any]) -> dict[str, Any]:
    types = {"PULocationID": "INT64", "DOLocationID": "INT64", "trip_distance": "FP64"}
    return {
        "inputs": [
            {"name": name, "shape": [1], "datatype": datatype, "data": [ride[name]]}
            for name, datatype in types.items()
        ]
    }


PEERS: dict[str, PeerSpec] = {
    "mlserver": PeerSpec(
        "mlserver",
        ("mlserver_runtime.py", "model-settings.json"),
        f"/v2/models/{MLSERVER_MODEL}/infer",
        "V2 infer, 3 columnar tensors of shape [1]",
        _v2_body,
        lambda answer: float(answer["outputs"][0]["data"][0]),
    ),
    "bentoml": PeerSpec(
        "bentoml",
        ("bentoml_service.py",),
        "/predict",
        "POST /predict, our ride body",
        lambda ride: ride,
        lambda answer: float(answer["duration"]),
    ),
    "mlflow": PeerSpec(
        "mlflow",
        ("mlflow_model.py",),
        "/invocations",
        '{"dataframe_records": [ride]}',
        lambda ride: {"dataframe_records": [ride]},
        lambda answer: float(answer["predictions"][0]),
    ),
}
# MLflow with two workers stalls ~40 ms per request (Nagle): one worker is shown beside it.
PEERS["mlflow-w1"] = dataclasses.replace(PEERS["mlflow"], workers=lambda ours: 1)


@dataclass
class PeerServer:
    """A running peer: where to post, what to post, and its process tree's root."""

    name: str
    url: str
    body: bytes
    workers: int
    request_format: str
    process: ManagedProcess

    @property
    def pid(self) -> int:
        """Return the root of the peer's process tree (its CPU time is the tree's)."""
        return self.process.pid

    def stop(self) -> None:
        """Stop the peer, then kill whatever of its process tree outlived it."""
        # BentoML's workers run in their own process groups: the tree, not the group, is the peer.
        try:
            tree = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        self.process.stop()
        self.process.kill()
        for child in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def start_peer(
    name: str,
    work: Path,
    model_pkl: Path,
    workers: int,
    ride: dict[str, Any],
    expected: float,
    log: Callable[[str], None] = print,
) -> PeerServer:
    """Start peer ``name`` serving ``model_pkl``; refuse it unless it predicts ``expected``."""
    spec = PEERS[name]
    python = peer_python(spec.venv, log)
    folder = work / name
    folder.mkdir(parents=True)
    for file in (*_DEFINITIONS, *spec.files):
        shutil.copy(PEERS_DIR / file, folder / file)
    shutil.copy(model_pkl, folder / "model.pkl")
    port = free_port()
    count = spec.workers(workers)
    command, env = _command(spec.venv, python, folder, port, count, work)
    process = ManagedProcess(name, command, env=env, log_path=work / f"{name}.log", cwd=folder)
    server = PeerServer(
        name,
        f"http://127.0.0.1:{port}{spec.path}",
        json.dumps(spec.body(ride)).encode(),
        count,
        spec.request_format,
        process,
    )
    try:
        answer = _first_answer(server)
        got = spec.answer(answer)
        if abs(got - expected) > TOLERANCE:
            raise PeerError(f"{name} predicts {got!r} for the ride, ours {expected!r}: refused")
    except BaseException:
        server.stop()
        raise
    return server


def _command(
    venv: str, python: Path, folder: Path, port: int, workers: int, work: Path
) -> tuple[list[str], dict[str, str]]:
    bin_dir = python.parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PEER_WORKERS": str(workers)}
    if venv == "mlserver":
        env |= {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_PARALLEL_WORKERS": str(workers),
        }
        return [str(bin_dir / "mlserver"), "start", str(folder)], env
    if venv == "bentoml":
        env |= {"BENTOML_HOME": str(work / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True"}
        command = [str(bin_dir / "bentoml"), "serve", "bentoml_service:RideDuration"]
        return [*command, "--host", "127.0.0.1", "--port", str(port)], env
    model = folder / "mlflow-model"
    if not model.exists():
        save = [str(python), str(folder / "mlflow_model.py"), str(folder / "model.pkl"), str(model)]
        _run(save, env, folder, work / f"{folder.name}-save.log")
    env["MLFLOW_TRACKING_URI"] = (work / "mlruns").as_uri()
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model), "--env-manager"]
    command += ["local", "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)]
    return command, env


def _run(command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
    process = ManagedProcess("mlflow save", command, env=env, log_path=log_path, cwd=cwd)
    if process.popen.wait(timeout=300) != 0:
        raise PeerError(f"saving the MLflow model failed{process.tail()}")
    process.stop()


def _first_answer(server: PeerServer) -> dict[str, Any]:
    """Post the ride until the peer answers 200 (its readiness); return the parsed answer."""
    rest = server.url.removeprefix("http://")
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PeerError(
                f"{server.name} exited with code {server.process.poll()}{server.process.tail()}"
            )
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("POST", f"/{path}", server.body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            text = response.read()
            if response.status == 200:
                return json.loads(text)
            last = f"{response.status} {text[:300]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.5)
    raise PeerError(f"{server.name} did not answer within {READY_TIMEOUT_S:.0f}s: {last}")
