"""Settings come from the environment; `make run` / `make test` fill in the embedded services."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import env as env_module
from config.localservices import LocalServices

BASE_DIR = Path(__file__).resolve().parents[2]


def _settings_in_subprocess(environ: dict, expression: str) -> str:
    code = f"import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); from django.conf import settings; print({expression})"
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=environ, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_database_and_redis_urls_come_from_the_environment():
    environ = {**os.environ, "DATABASE_URL": "postgres://alice:secret@db.example.test:6543/market", "REDIS_URL": "redis://cache.example.test:6380/3"}
    out = _settings_in_subprocess(
        environ,
        "settings.DATABASES['default']['HOST'], settings.DATABASES['default']['PORT'], settings.DATABASES['default']['NAME'], settings.CACHES['default']['LOCATION'], settings.CELERY_BROKER_URL",
    )
    assert out == "db.example.test 6543 market redis://cache.example.test:6380/3 redis://cache.example.test:6380/3"


def test_debug_and_hosts_and_secret_come_from_the_environment():
    environ = {**os.environ, "DJANGO_DEBUG": "true", "DJANGO_ALLOWED_HOSTS": "market.example.test, api.example.test", "DJANGO_SECRET_KEY": "from-env"}
    out = _settings_in_subprocess(environ, "settings.DEBUG, settings.ALLOWED_HOSTS, settings.SECRET_KEY")
    assert out == "True ['market.example.test', 'api.example.test'] from-env"


def test_the_services_file_written_by_make_run_is_used_when_the_environment_is_silent(tmp_path, monkeypatch):
    # Given no DATABASE_URL in the environment and a services file from a running `make run`
    services_file = tmp_path / "services.env"
    services_file.write_text("# comment\nDATABASE_URL=postgres://postgres@%2Ftmp%2Fsock/computeflow\nREDIS_URL=redis://127.0.0.1:6390/0\n")
    monkeypatch.setattr(env_module, "SERVICES_ENV_FILE", services_file)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    # Then the file fills in what the environment does not say, and the environment wins otherwise
    assert env_module.env_str("DATABASE_URL") == "postgres://postgres@%2Ftmp%2Fsock/computeflow"
    assert env_module.env_str("REDIS_URL") == "redis://from-env:6379/0"
    assert env_module.env_str("NOT_SET", "fallback") == "fallback"


def test_env_helpers_parse_booleans_integers_and_lists(monkeypatch):
    monkeypatch.setenv("CF_FLAG", "yes")
    monkeypatch.setenv("CF_NUMBER", "42")
    monkeypatch.setenv("CF_LIST", "a, b,,c")
    assert env_module.env_bool("CF_FLAG") is True
    assert env_module.env_bool("CF_MISSING", True) is True
    assert env_module.env_int("CF_NUMBER", 1) == 42
    assert env_module.env_list("CF_LIST", []) == ["a", "b", "c"]


def test_the_launcher_uses_given_urls_instead_of_starting_embedded_servers(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
    services = LocalServices()
    services.start_postgres()
    services.start_redis()
    assert services.children == []  # nothing embedded was started
    assert services.env["DATABASE_URL"] == "postgres://postgres@127.0.0.1:5432/x"


@pytest.mark.skipif(bool(os.environ.get("CF_SKIP_EMBEDDED_TEST")), reason="explicitly disabled")
def test_the_launcher_starts_an_embedded_redis_when_no_url_is_given(monkeypatch, tmp_path):
    import redis

    monkeypatch.delenv("REDIS_URL", raising=False)
    services = LocalServices()
    try:
        services.start_redis()
        client = redis.Redis.from_url(services.env["REDIS_URL"])
        assert client.ping() is True
        client.close()
    finally:
        services.stop()


def test_the_launcher_starts_an_embedded_postgresql_with_btree_gist_when_no_url_is_given(monkeypatch, tmp_path):
    import psycopg2

    import config.localservices as localservices

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(localservices, "LOCAL_DIR", tmp_path)
    services = LocalServices()
    try:
        services.start_postgres()
        url = services.env["DATABASE_URL"]
        assert url.startswith("postgres://postgres@") and url.endswith("/computeflow")
        import dj_database_url

        config = dj_database_url.parse(url)
        connection = psycopg2.connect(dbname=config["NAME"], user=config["USER"], host=config["HOST"])
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
            cursor.execute("SHOW server_version")
            assert int(cursor.fetchone()[0].split(".")[0]) >= 16
        connection.close()
    finally:
        services.stop()
