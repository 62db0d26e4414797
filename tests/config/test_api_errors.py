"""Every API error has one shape, whatever raised it."""

import json

import pytest

from tests.factories import member


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_in_the_api_error_shape_and_changes_nothing(client):
    from marketplace.models import Reservation

    client.force_login(member(kind="buyer"))
    body = json.dumps({"x": "a" * (6 * 1024 * 1024)})
    response = client.post("/api/reservations/", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Reservation.objects.count() == 0


@pytest.mark.django_db
def test_unauthenticated_and_unknown_routes_answer_in_the_error_shape(client):
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_a_page_size_over_the_limit_is_refused_with_the_field_named():
    from rest_framework.exceptions import ValidationError
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from config.api import Pagination

    request = Request(APIRequestFactory().get("/x", {"page_size": "100000"}))
    with pytest.raises(ValidationError) as error:
        Pagination().get_page_size(request)
    assert "page_size" in error.value.detail
