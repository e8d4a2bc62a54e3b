"""Settings and the gunicorn config module (imported in a child: it sets process env)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_modes.core.errors import DeployError
from deploy_modes.web.settings import WebSettings, default_workers, load_settings

_SHOW = (
    "import json, os, deploy_modes.web.gunicorn_conf as c; print(json.dumps({k: getattr(c, k) "
    "for k in c.__all__ if not callable(getattr(c, k))} | "
    "{'metrics_dir': os.environ['PROMETHEUS_MULTIPROC_DIR']}))"
)


def _gunicorn_conf(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_WEB_")}
    clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", _SHOW], env={**clean, **env}, capture_output=True, text=True
    )


def test_settings_read_their_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEPLOY_WEB_PORT", "8080")
    monkeypatch.setenv("DEPLOY_WEB_MAX_BATCH_RIDES", "5")
    monkeypatch.setenv("PORT", "1")  # another prefix is not ours
    settings = load_settings(WebSettings)
    assert (settings.port, settings.max_batch_rides, settings.host) == (8080, 5, "127.0.0.1")
    assert settings.workers == default_workers() >= 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("WORKERS", "0"),
        ("MAX_BODY_BYTES", "-1"),
        ("WORKER_CLASS", "eventlet"),
    ],
)
def test_a_bad_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, name, value):
    monkeypatch.setenv(f"DEPLOY_WEB_{name}", value)
    with pytest.raises(DeployError, match=f"DEPLOY_WEB_{name}='{value}'"):
        load_settings(WebSettings)


def test_gunicorn_conf_binds_from_env_and_preloads():
    result = _gunicorn_conf(
        DEPLOY_WEB_HOST="0.0.0.0", DEPLOY_WEB_PORT="1234", DEPLOY_WEB_WORKERS="3"
    )
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    assert conf["bind"] == ["0.0.0.0:1234"]
    assert conf["workers"] == 3 and conf["preload_app"] is True
    assert conf["graceful_timeout"] < conf["timeout"] + 60
    assert conf["accesslog"] is None  # the app writes the JSON access lines
    assert Path(conf["metrics_dir"]).name.startswith("deploy-web-metrics-")
    Path(conf["metrics_dir"]).rmdir()  # created fresh and empty (the child never ran on_exit)


def test_gunicorn_conf_brackets_ipv6_hosts():
    conf = json.loads(_gunicorn_conf(DEPLOY_WEB_HOST="::", DEPLOY_WEB_PORT="80").stdout)
    assert conf["bind"] == ["[::]:80"]
    Path(conf["metrics_dir"]).rmdir()


def test_gunicorn_conf_empties_a_given_metrics_dir(tmp_path: Path):
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    result = _gunicorn_conf(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_gunicorn_conf_with_a_bad_setting_says_so_in_one_line():
    result = _gunicorn_conf(DEPLOY_WEB_PORT="http")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: invalid setting: DEPLOY_WEB_PORT='http'")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("worker_class", "app", "threads"),
    [
        (None, "deploy_modes.web.wsgi:asgi", 1),  # the default: the asyncio worker and bridge
        ("asgi", "deploy_modes.web.wsgi:asgi", 1),
        ("gthread", "deploy_modes.web.wsgi:app", 4),
        ("sync", "deploy_modes.web.wsgi:app", 1),
    ],
)
def test_gunicorn_conf_names_the_app_its_worker_class_takes(
    worker_class: str | None, app: str, threads: int
):
    env = {"DEPLOY_WEB_THREADS": "4"}
    if worker_class:
        env["DEPLOY_WEB_WORKER_CLASS"] = worker_class
    result = _gunicorn_conf(**env)
    assert result.returncode == 0, result.stderr
    conf = json.loads(result.stdout)
    # gunicorn's class of that name, subclassed (JSON protocol errors, timeouts): web/workers.py
    expected = {"asgi": "ASGIWorker", "gthread": "ThreadWorker", "sync": "SyncWorker"}
    assert conf["worker_class"] == f"deploy_modes.web.workers.{expected[worker_class or 'asgi']}"
    assert conf["wsgi_app"] == app and conf["threads"] == threads
    Path(conf["metrics_dir"]).rmdir()


def test_gunicorn_conf_freezes_the_preloaded_objects_before_each_fork():
    script = (
        "import gc, os, deploy_modes.web.gunicorn_conf as c; gc.unfreeze();"
        " before = gc.get_freeze_count(); c.pre_fork(None, None);"
        " print(before, gc.get_freeze_count(), len(gc.get_objects()),"
        " os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_WEB_")}
    clean.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=clean, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    before, after, left, metrics_dir = result.stdout.split()
    Path(metrics_dir).rmdir()
    # Collections no longer walk the frozen objects: few are left in their sight.
    assert int(before) == 0 and int(after) > 1000 and int(left) < int(after)
