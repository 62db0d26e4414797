"""/healthz: can this process reach PostgreSQL, Redis and at least one Celery worker?"""

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def _check_redis() -> dict:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return {"ok": True}


def _check_celery() -> dict:
    from config.celery import app

    # limit=1: the first worker that answers is enough, so a healthy check does not wait out the timeout.
    replies = app.control.inspect(timeout=1.0, limit=1).ping() or {}
    if not replies:
        return {"ok": False, "error": "no Celery worker answered a ping within 1s"}
    return {"ok": True, "answered_by": sorted(replies)}


CHECKS = {"database": _check_database, "redis": _check_redis, "celery": _check_celery}


@never_cache
def healthz(request):
    results = {}
    for name, check in CHECKS.items():
        if name == "celery" and not results["redis"]["ok"] and settings.CELERY_BROKER_URL == settings.REDIS_URL:
            # Asking workers through a broker that is down would only wait for kombu's retries.
            results[name] = {"ok": False, "error": "the broker (Redis) is unreachable", "ms": 0.0}
            continue
        started = time.monotonic()
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 - any failure of a dependency is "down", with its reason
            result = {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
        result["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = result
    healthy = all(result["ok"] for result in results.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": results}, status=200 if healthy else 503)
