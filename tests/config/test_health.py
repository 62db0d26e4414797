import pytest
from django.test import override_settings


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery
def test_healthz_is_ok_when_database_redis_and_a_worker_answer(client, celery_worker_process):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"] and body["checks"]["celery"]["ok"]


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_redis_is_unreachable(client):
    # Given a Redis address where nothing listens (port 1 on loopback)
    unreachable = "redis://127.0.0.1:1/0"
    with override_settings(REDIS_URL=unreachable, CELERY_BROKER_URL=unreachable):
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["celery"]["ok"] is False
