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


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/reservations/null,null/extend/", "/api/sites/0.5/retire/", "/api/nope/"])
def test_an_api_url_no_route_matches_is_a_404_in_the_error_shape(client, path):
    # given a signed-in member and an API address that matches no route (found by fuzzing: an HTML page)
    client.force_login(member())
    # when it is called
    response = client.post(path)
    # then the answer is the API's JSON error, not Django's HTML page
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_a_page_address_no_route_matches_is_still_an_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_an_api_crash_outside_drf_answers_in_the_error_shape(rf):
    from config.api import server_error

    response = server_error(rf.get("/api/anything/"))
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"


@pytest.mark.django_db
def test_the_schema_documents_the_paginated_lists_as_pages(client):
    # given the OpenAPI schema (it described the market's lists as bare arrays)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    # then both market lists are documented as pages, with their page parameters
    for path in ("/api/market/offers/", "/api/reservations/"):
        operation = schema["paths"][path]["get"]
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert {"count", "next", "previous", "results"} <= set(page["properties"])
        assert {"page", "page_size"} <= {parameter["name"] for parameter in operation["parameters"]}
