"""Fixtures shared by every test package: a real tiny model, a real moto server, PostgreSQL,
a real HTTP server laid out as the TLC site.

Fixtures fit a real small model into a temp dir and start real processes on free loopback
ports instead of mocking them. ``DEPLOY_REQUIRE_POSTGRES=1`` / ``DEPLOY_REQUIRE_DOCKER=1``
(set by ``.ci/run``) turn "cannot start it here" skips into failures, so CI never skips them.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from deploy_modes.core.artifact import LoadedModel, load_model
from deploy_modes.core.data import generate_month, month_file, write_month
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.training import train_model
from deploy_modes.launch.emulator import EMULATOR_CREDENTIALS, Emulator, ensure_emulator
from deploy_modes.launch.processes import free_port

# Never let a test reach real AWS: dummy credentials, a region, no shared config.
for _key, _value in EMULATOR_CREDENTIALS.items():
    os.environ[_key] = _value
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ.pop("AWS_PROFILE", None)
# `--runtime auto` would pick Docker Compose wherever an engine answers, turning fast CLI
# tests into image builds; tests of auto itself and the docker suite choose explicitly.
os.environ.setdefault("DEPLOY_RUNTIME", "local")
# The stacks tests start are their own compose projects (`deploy-test-<checkout>-web`): never a
# user's `deploy-web`, nor another checkout's test stacks on a shared engine.
_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parents[1]).encode()).hexdigest()[:6]
os.environ["DEPLOY_COMPOSE_PROJECT_PREFIX"] = f"deploy-test-{_CHECKOUT}"

TEST_ROWS = 6_000
DOCS_HARNESS = "tests/docs/test_docs.py"
# Chromium for the browser tests: headless, and silent towards anything but the page itself.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_CUT = "/cut/"  # a tlc_site path under it sends 100 bytes of the file, promising all of it

# Hypothesis' deadline and "too slow" checks are timings: on a shared 2-core CI box they fail
# tests for the machine's load, not for a bug. Properties are checked; time is benchmarked.
settings.register_profile(
    "deploy-modes",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("deploy-modes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the docs harness first, keeping its blocks in order.

    It holds about half of the suite's time; collected first, its files start first under
    ``-n 2`` (the README's test command) instead of running last and alone.
    """
    items.sort(key=lambda item: not item.nodeid.startswith(DOCS_HARNESS))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Send each test file to one worker whole, and each markdown file of the docs harness too.

    ``--dist loadfile`` keeps a file's fixtures and order on one worker; the harness's blocks
    depend only on earlier blocks of the same markdown file (one project folder each), so
    README.md and every docs/*.md may run on different workers.
    """
    from xdist.scheduler import LoadFileScheduling

    if config.getoption("dist") != "loadfile":
        return None

    class MarkdownFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != DOCS_HARNESS or "[" not in nodeid:
                return scope
            case = nodeid.partition("[")[2].rstrip("]")  # README.md:29, or a file's own id
            return f"{scope}::{case.partition(':')[0]}"

    return MarkdownFileScheduling(config, log)


def require_or_skip(env_var: str, reason: str) -> None:
    """Fail when CI demands the resource (``env_var=1``), skip visibly otherwise."""
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{reason} (and {env_var}=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a directory holding two small generated months, 2021-01 and 2021-02."""
    directory = tmp_path_factory.mktemp("data")
    for month in (1, 2):
        write_month(
            generate_month(2021, month, rows=TEST_ROWS, seed=7),
            directory / month_file(2021, month),
        )
    return directory


class _TlcFiles(http.server.SimpleHTTPRequestHandler):
    """Serve a folder as the TLC site does; under ``/cut/`` a transfer stops short."""

    def send_head(self) -> object:
        if not self.path.startswith(_CUT):
            return super().send_head()
        whole = Path(str(self.directory)) / self.path[len(_CUT) :]
        if not whole.is_file():
            self.send_error(404)
            return None
        self.send_response(200)
        self.send_header("Content-Length", str(whole.stat().st_size))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(whole.read_bytes()[:100])
        self.close_connection = True
        return None

    def log_message(self, *args: object) -> None:  # keep the test output clean
        return


@pytest.fixture(scope="session")
def tlc_site(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """Return the base URL of a real loopback HTTP server laid out as the TLC site, and its folder.

    It holds the data dir's months (2021-01, 2021-02) and a small 2021-03.
    """
    root = tmp_path_factory.mktemp("tlc-site")
    for month in (1, 2):
        shutil.copy(data_dir / month_file(2021, month), root)
    write_month(generate_month(2021, 3, rows=500, seed=11), root / month_file(2021, 3))
    handler = functools.partial(_TlcFiles, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def tlc_cut(tlc_site: tuple[str, Path]) -> str:
    """Return a URL base serving the same months, each cut off after 100 bytes (a short body)."""
    return tlc_site[0] + _CUT.rstrip("/")


@pytest.fixture(scope="session")
def model_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory of a real linear model trained on the small months."""
    out = tmp_path_factory.mktemp("model") / "ride-duration"
    train_model(data_dir / month_file(2021, 1), data_dir / month_file(2021, 2), out)
    return out


@pytest.fixture(scope="session")
def tip_model_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the directory of a real linear tip model trained on the same small months."""
    out = tmp_path_factory.mktemp("model") / "tip-amount"
    months = (data_dir / month_file(2021, 1), data_dir / month_file(2021, 2))
    train_model(*months, out, target="tip_amount")
    return out


@pytest.fixture(scope="session")
def loaded_model(model_dir: Path) -> LoadedModel:
    """Return the trained model loaded the way every mode loads it."""
    return load_model(model_dir)


@pytest.fixture(scope="session")
def model_service(loaded_model: LoadedModel) -> ModelService:
    """Return the one model service every mode shares."""
    return ModelService(loaded_model)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Start a real moto server process on a free loopback port for the whole session."""
    emulator = ensure_emulator(port=free_port(), log_dir=tmp_path_factory.mktemp("moto-logs"))
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """Return a PostgreSQL SQLAlchemy URL from ``DEPLOY_TEST_POSTGRES_URL`` or skip visibly."""
    url = os.environ.get("DEPLOY_TEST_POSTGRES_URL")
    if not url:
        require_or_skip(
            "DEPLOY_REQUIRE_POSTGRES",
            "no PostgreSQL: set DEPLOY_TEST_POSTGRES_URL (.ci/run starts one)",
        )
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except Exception as exc:  # any failure: no usable server
        require_or_skip("DEPLOY_REQUIRE_POSTGRES", f"PostgreSQL at {url} does not answer: {exc}")
    finally:
        # Close the probe's pooled connection now: a leaked one fails a random later test
        # with ResourceWarning under filterwarnings=error.
        engine.dispose()
    # xdist's workers, and test runs side by side outside xdist (tests/mutation/run.py's
    # workers set DEPLOY_TEST_DATABASE_SUFFIX), each get a database of their own.
    worker = os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("DEPLOY_TEST_DATABASE_SUFFIX")
    return _worker_database(url, worker) if worker else str(url)


def _worker_database(url: str, worker: str) -> str:
    """Return the URL of ``url``'s database suffixed by the xdist worker, creating it if missing.

    Tests name their tables (``predictions``, ``trips``): two workers sharing one database would
    replace each other's rows.
    """
    import sqlalchemy

    base = sqlalchemy.engine.make_url(url)
    name = f"{base.database}_{worker}"
    engine = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sqlalchemy.text("select 1 from pg_database where datname = :name"), {"name": name}
            ).first()
            if found is None:
                conn.execute(sqlalchemy.text(f'create database "{name}"'))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Return the system Chromium driven by Playwright, or skip visibly (fail in CI).

    ``DEPLOY_TEST_CHROMIUM`` names the binary (default /usr/bin/chromium, from apt). Playwright
    never downloads a browser here, and the flags keep Chromium off the network: the page under
    test is on 127.0.0.1.
    """
    chromium = Path(os.environ.get("DEPLOY_TEST_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.is_file():
        require_or_skip(
            "DEPLOY_REQUIRE_BROWSER",
            f"no Chromium at {chromium}: apt-get install chromium (.ci/run does)",
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_or_skip("DEPLOY_REQUIRE_BROWSER", "no playwright: pip install -e '.[browser]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def bare_pickle(loaded_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the trained model as a bare ``(DictVectorizer, regressor)`` pickle (lin_reg.bin)."""
    import pickle

    steps = loaded_model.pipeline.steps
    assert len(steps) == 2, steps  # the course's tuple holds exactly a vectorizer and a model
    path = tmp_path_factory.mktemp("course-pickle") / "lin_reg.bin"
    path.write_bytes(pickle.dumps((steps[0][1], steps[1][1])))
    return path
