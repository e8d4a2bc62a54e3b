"""``deploy web``: serve the model over HTTP with gunicorn, and ``deploy web predict``."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from deploy_modes.cli.console import console, isatty, say, typer_app
from deploy_modes.cli.runtime import BakeOption, ModelOption, compose_run, resolve_runtime
from deploy_modes.core.errors import DeployError
from deploy_modes.core.storage import is_s3
from deploy_modes.launch.processes import (
    ManagedProcess,
    port_in_use,
    sigterm_as_interrupt,
    wait_http,
)

__all__ = ["GUNICORN_ARGS", "app", "predict", "run"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9696
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
# Exactly what the container runs; the settings travel as DEPLOY_WEB_* variables.
GUNICORN_ARGS = [
    "-m",
    "gunicorn",
    "-c",
    "python:deploy_modes.web.gunicorn_conf",  # it also names the app (see wsgi_app there)
]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0  # above gunicorn's graceful_timeout, so in-flight requests finish first
LOG_DIR = Path(".deploy/logs")

app = typer_app(
    "Serve the model over HTTP (Flask behind gunicorn) until Ctrl-C, or query a running "
    "service with `deploy web predict`.\n\nExample: deploy web --port 9696 --workers 2"
)


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    runtime: Annotated[
        str, typer.Option(envvar="DEPLOY_RUNTIME", help="Where to run: auto, local or compose.")
    ] = "auto",
    host: Annotated[
        str, typer.Option(envvar="DEPLOY_WEB_HOST", help="Interface to bind.")
    ] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option(envvar="DEPLOY_WEB_PORT", min=1, max=65535, help="TCP port.")
    ] = DEFAULT_PORT,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="DEPLOY_WEB_WORKERS", min=1, max=64, help="gunicorn workers [1 per CPU]."
        ),
    ] = None,
    model: ModelOption = None,
    bake: BakeOption = False,
) -> None:
    """Serve POST /predict on HTTP with gunicorn until Ctrl-C or SIGTERM.

    Example: deploy web --port 9696 --workers 2
    """
    if ctx.invoked_subcommand is not None:
        return
    if resolve_runtime(runtime) == "compose":
        compose_run("web", host=host, port=port, workers=workers, model=model, bake=bake)
        return
    serve_local(host, port, workers, model)


def serve_local(host: str, port: int, workers: int | None, model: str | None) -> None:
    """Run gunicorn on ``host:port`` in the foreground, stopping it gracefully on a signal."""
    from deploy_modes.core.artifact import load_model
    from deploy_modes.core.demo import ensure_model
    from deploy_modes.core.settings import CoreSettings

    probe_host = _connect_host(host)
    if port_in_use(port, probe_host):
        raise DeployError(
            f"port {port} on {host} is already in use: stop what listens there "
            f"or choose another port with --port"
        )
    # A model the user named must exist: only the default location gets a demo model.
    location = model or ensure_model(CoreSettings(), say)
    loaded = load_model(location)  # a broken model fails here, in one line, not in gunicorn
    say(f"serving {loaded.name} version {loaded.version} from {location}")
    metrics_dir = tempfile.mkdtemp(prefix="deploy-web-metrics-")
    env = {
        "DEPLOY_MODEL_LOCATION": location if is_s3(location) else str(Path(location).resolve()),
        "DEPLOY_WEB_HOST": host,
        "DEPLOY_WEB_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        "PYTHONUNBUFFERED": "1",  # access lines reach the log as they happen
    }
    if workers is not None:
        env["DEPLOY_WEB_WORKERS"] = str(workers)
    log_path = LOG_DIR / f"web-{port}.log"
    echo = _LogEcho(log_path, log_path.stat().st_size if log_path.is_file() else 0)
    url = f"http://{probe_host}:{port}"
    process: ManagedProcess | None = None
    try:
        with sigterm_as_interrupt():
            process = ManagedProcess.python("gunicorn", GUNICORN_ARGS, env=env, log_path=log_path)
            with _status(f"starting gunicorn on {host}:{port}"):
                wait_http(f"{url}/ready", timeout=READY_TIMEOUT, process=process)
            _print_ready(url, log_path)
            echo.follow(process)
    except KeyboardInterrupt:
        pass
    finally:
        if process is not None and process.poll() is None:
            say("stopping: gunicorn finishes in-flight requests first")
            process.stop(timeout=STOP_TIMEOUT)
        if process is not None:
            echo.pump()  # gunicorn's last words: workers exiting, master shutting down
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if process is not None and process.poll() not in (0, None):
        raise DeployError(f"gunicorn exited with code {process.poll()}; log: {log_path}")
    say("stopped")


def _connect_host(host: str) -> str:
    """Return the address a client on this machine uses to reach ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _status(message: str) -> contextlib.AbstractContextManager[Any]:
    if isatty():
        return console.status(message)
    say(message)
    return contextlib.nullcontext()


def _print_ready(url: str, log_path: Path) -> None:
    ride = '{"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}'
    console.print(f"[bold green]ready[/bold green] at {url}  (logs also in {log_path})")
    console.print(
        f"try:  curl -s -X POST {url}/predict -H 'Content-Type: application/json' -d '{ride}'",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"also: {url}/health {url}/ready {url}/model {url}/metrics {url}/openapi.json",
        highlight=False,
        soft_wrap=True,
    )
    console.print("press Ctrl-C to stop", highlight=False)


class _LogEcho:
    """Copy what gunicorn appends to its log file to our stdout."""

    def __init__(self, log_path: Path, offset: int) -> None:
        self.log_path = log_path
        self.offset = offset

    def pump(self) -> bool:
        """Print the lines added since the last call; return whether there were any."""
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        if chunk:
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        return bool(chunk)

    def follow(self, process: ManagedProcess) -> None:
        """Echo the log until the process exits."""
        while True:
            if not self.pump():
                if process.poll() is not None:
                    return
                time.sleep(0.2)


@app.command("predict")
def predict(
    url: Annotated[
        str, typer.Option(envvar="DEPLOY_WEB_URL", help="Base URL of a running service.")
    ] = DEFAULT_URL,
    pickup: Annotated[int, typer.Option("--pu", help="Pickup zone ID (PULocationID).")] = 10,
    dropoff: Annotated[int, typer.Option("--do", help="Dropoff zone ID (DOLocationID).")] = 50,
    distance: Annotated[float, typer.Option(help="Trip distance in miles.")] = 40.0,
    ride: Annotated[
        str | None, typer.Option(help="A whole ride as JSON (overrides --pu/--do/--distance).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the answer.")] = 10.0,
) -> None:
    """Send one ride to a running service and print its predicted duration.

    Example: deploy web predict --pu 10 --do 50 --distance 40
    """
    if ride is not None:
        try:
            payload: Any = json.loads(ride)
        except ValueError as exc:
            raise DeployError(f"--ride is not valid JSON: {exc}") from None
    else:
        payload = {"PULocationID": pickup, "DOLocationID": dropoff, "trip_distance": distance}
    answer = post_json(f"{url.rstrip('/')}/predict", payload, timeout)
    console.print(
        f"predicted duration: [bold]{answer['duration']:.2f}[/bold] min "
        f"(model version {answer.get('model_version', '?')})",
        highlight=False,
    )


def post_json(url: str, payload: Any, timeout: float) -> dict[str, Any]:
    """POST ``payload`` as JSON and return the JSON answer; raise DeployError on any failure."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # user-given URL
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise DeployError(f"the service refused the ride ({exc.code}): {_error_of(exc)}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeployError(
            f"no web service answers at {url} ({reason}): start one with `deploy web`"
        ) from None
    try:
        answer = json.loads(body)
        float(answer["duration"])
    except (ValueError, KeyError, TypeError):
        raise DeployError(f"{url} answered something that is not a prediction") from None
    return answer


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        field = f" (field {body['field']})" if body.get("field") else ""
        return f"{body['error']}{field}"
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return str(exc.reason)
