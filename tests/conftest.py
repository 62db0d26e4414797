"""Shared fixtures: a real Celery worker process, a real Chromium, the catalog."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from django.conf import settings

from tests.factories import catalog_loaded

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def catalog(db):
    catalog_loaded()


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
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url_for(connection.settings_dict["NAME"])
    env["REDIS_URL"] = settings.REDIS_URL
    # billing's tasks re-read objects from Stripe: the worker uses the tests' localstripe and Connect fake
    env.update(STRIPE_TEST_KEYS, STRIPE_API_BASE=localstripe_url, STRIPE_CONNECT_API_BASE=connect_fake_server.url)
    log_path = BASE_DIR / ".local" / "test-celery-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO",
         "--without-gossip", "--without-mingle", "--hostname", f"test-worker-{os.getpid()}@%h"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    from config.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited: see {log_path}")
        replies = app.control.inspect(timeout=0.5).ping() or {}
        if any(name.startswith(f"test-worker-{os.getpid()}@") for name in replies):
            break
    else:
        process.terminate()
        raise RuntimeError(f"the Celery worker did not answer within 60s: see {log_path}")
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


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
