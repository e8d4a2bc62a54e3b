"""``deploy web``: serve the model over HTTP with gunicorn, and ``deploy web predict``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer
from rich.markup import escape

from deploy_modes.cli.console import console, typer_app
from deploy_modes.cli.options import (
    BakeOption,
    ModelOption,
    ModelSha256Option,
    PortOption,
    RuntimeOption,
    TrustPickleOption,
    TrustTypeOption,
    WorkersOption,
    chosen_runtime,
    chosen_trust,
    model_location,
)
from deploy_modes.compose.runtime import Runtime
from deploy_modes.compose.settings import MAX_REPLICAS
from deploy_modes.core.errors import DeployError
from deploy_modes.core.settings import load_settings
from deploy_modes.web.settings import DEFAULT_PORT, WebSettings

__all__ = ["app", "base_url", "post_json", "predict", "reload", "run"]

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

app = typer_app(
    "Serve the model over HTTP (Flask behind gunicorn) until Ctrl-C, or query a running "
    f"service with `deploy web predict`.\n\nExample: deploy web --port {DEFAULT_PORT} --workers 2"
)


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    runtime: RuntimeOption = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to bind (env DEPLOY_WEB_HOST; default: 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    model: ModelOption = None,
    bake: BakeOption = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_REPLICAS,
            help="Web containers behind an nginx load balancer on --port (--runtime compose; "
            "locally, --workers scales gunicorn).",
        ),
    ] = 1,
) -> None:
    """Serve POST /predict on HTTP with gunicorn until Ctrl-C or SIGTERM.

    Example: deploy web --port 9696 --workers 2   (or: deploy web --runtime compose --replicas 3)
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(WebSettings, host=host, port=port)
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    # Workers only when given: the server reads DEPLOY_WEB_WORKERS (or one per CPU) itself.
    if workers is None and "workers" in settings.model_fields_set:
        workers = settings.workers
    if chosen_runtime(runtime) is Runtime.compose:
        from deploy_modes.compose.stacks import WebStack, up_web

        options = WebStack(
            port=settings.port,
            workers=workers,
            model=model,
            bake=bake,
            host=settings.host,
            trust=trust,
            replicas=replicas,
        )
        stack = up_web(options)
        _print_stack_up(stack.project, f"http://127.0.0.1:{settings.port}")
        return
    if replicas != 1:
        raise DeployError(
            "--replicas scales the compose stack (--runtime compose): locally, --workers "
            "scales gunicorn's worker processes"
        )
    from deploy_modes.launch.web import check_port, serve_local

    check_port(settings.host, settings.port)  # before a demo model may be trained
    serve_local(settings.host, settings.port, workers, model_location(model), trust)


def _replicas_to_roll(port: int | None, url: str | None) -> Any:
    """Return the scaled compose web stack to roll, or None when the reload is a local one."""
    from urllib.parse import urlsplit

    from deploy_modes.compose.replicas import BALANCER, scaled_stack
    from deploy_modes.compose.runtime import docker_engine_answers
    from deploy_modes.compose.stack import Stack
    from deploy_modes.launch.registry import live_records

    if url is not None:
        port = urlsplit(url if "://" in url else f"http://{url}").port or port
    if any(e.mode == "web" and port in (None, e.port) for e in live_records()):
        return None  # a local server here: it is the one meant (reload_local picks it)
    if not docker_engine_answers()[0]:
        return None
    stack = Stack("web")
    if not scaled_stack(stack):
        return None
    balancer = [s for s in stack.containers() if s.service == BALANCER]
    if port is not None and not any(f":{port}->" in s.ports for s in balancer):
        return None
    return stack


def _print_stack_up(project: str, url: str) -> None:
    console.print(f"[bold green]web stack up[/bold green] ({escape(project)}): {escape(url)}")
    console.print(
        f"  POST {url}/predict   GET {url}/health  {url}/ready  {url}/metrics\n"
        "next:\n"
        f"  curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
        """-d '{"PULocationID": 10, "DOLocationID": 50, "trip_distance": 40}'\n"""
        "  deploy status      deploy logs web -f      deploy down web",
        highlight=False,
        markup=False,
    )


@app.command("reload")
def reload(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model to serve instead: artifact dir, course pickle, MLflow dir or s3:// URI "
            "(default: re-read the location the server serves now).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port of the server to reload, when several run here.",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="The server to reload, by URL (its port picks it).", show_default=False),
    ] = None,
    trust_pickle: TrustPickleOption = None,
    trust_type: TrustTypeOption = None,
    model_sha256: ModelSha256Option = None,
) -> None:
    """Load and prove a new model in the running `deploy web`, then retire its old workers.

    The compose stack's replicas (--replicas N) are reloaded one at a time, each proven before
    the next. Example: deploy web reload --model models/ride-duration
    """
    from deploy_modes.launch.web import reload_local

    if url is not None:
        base_url(url)  # a typo'd URL is one line, before anything is sent
    trust = chosen_trust(trust_pickle, trust_type, model_sha256)
    rolling = _replicas_to_roll(port, url)
    if rolling is not None:
        from deploy_modes.compose.replicas import roll

        rolled = roll(rolling, model, trust)
        console.print(
            f"[bold green]rolled[/bold green] {len(rolled.replicas)} replicas one at a time: "
            f"serving version {escape(rolled.version)} "
            f"(was {escape(', '.join(sorted(set(rolled.previous))))})",
            highlight=False,
        )
        return
    done = reload_local(model, trust, port=port, url=url)
    console.print(
        f"[bold green]reloaded[/bold green]: serving version {escape(done.version)} "
        f"(was {escape(done.previous)}; loaded and proven in {done.seconds:.2f} s, "
        f"{len(done.old_workers)} old workers retired)",
        highlight=False,
    )


@app.command("predict")
def predict(
    url: Annotated[
        str,
        typer.Option(
            envvar="DEPLOY_WEB_URL",
            help="Base URL of a running service; host:port means http://host:port.",
        ),
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
    answer = post_json(f"{base_url(url)}/predict", payload, timeout)
    console.print(
        f"predicted duration: [bold]{answer['duration']:.2f}[/bold] min "
        f"(model version {escape(str(answer.get('model_version', '?')))})",
        highlight=False,
    )


def base_url(url: str) -> str:
    """Return ``url`` as an http(s) base URL; ``localhost:9696`` means http, as for curl."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https") or not text.split("://", 1)[1].strip("/"):
        raise DeployError(f"--url must be http(s)://host:port or host:port, got {url!r}")
    return text.rstrip("/")


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
