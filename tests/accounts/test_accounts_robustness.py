"""Bad input to the accounts endpoints gets a clear 4xx and changes nothing (found by fuzzing: each was a 500)."""

import pytest
from rest_framework.test import APIClient

from accounts.middleware import SESSION_KEY
from accounts.models import ApiToken
from accounts.services import api_token_create
from tests.factories import OrganizationFactory, member

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "key",
    [
        "cf_aaaaaaa\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # a NUL byte: PostgreSQL cannot even compare it
        "cf_" + "é" * 40,
        "cf_" + "a" * 5000,
    ],
)
def test_an_api_key_that_cannot_be_a_key_is_a_401_not_a_crash(key):
    # given a client that sends a malformed key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    # when it calls the API
    response = client.get("/api/me/")
    # then it is refused in the API's error shape
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_real_key_still_authenticates():
    # given a key made by the service
    user = member()
    _, key = api_token_create(user=user, organization=user.memberships.get().organization, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    # when / then it works (the key shape check does not refuse real keys)
    assert client.get("/api/me/").json()["email"] == user.email
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize("organization", ["abc", "", "1.5", "\x00", "99999999999999999999999", "-1"])
def test_switching_to_an_organization_id_that_is_garbage_is_a_404_and_changes_nothing(client, organization):
    # given a signed-in member
    user = member()
    client.force_login(user)
    # when they post garbage as the organization to act for
    response = client.post("/accounts/organization/", {"organization": organization, "next": "/market/"})
    # then it is a 404, and the session is untouched
    assert response.status_code == 404
    assert SESSION_KEY not in client.session


def test_switching_to_another_users_organization_is_a_404(client):
    # given a member and an organization they do not belong to
    client.force_login(member())
    stranger = OrganizationFactory()
    # when / then
    assert client.post("/accounts/organization/", {"organization": stranger.pk}).status_code == 404
    assert SESSION_KEY not in client.session


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [("/market/", "/market/"), ("https://evil.example/phish", "/"), ("//evil.example/", "/"), ("", "/")],
)
def test_switching_organization_returns_only_to_a_page_of_this_site(client, next_url, expected):
    # given a member of two organizations
    user = member()
    second = OrganizationFactory()
    second.memberships.create(user=user, role="member")
    client.force_login(user)
    # when they switch to the second one with a `next` address
    response = client.post("/accounts/organization/", {"organization": second.pk, "next": next_url})
    # then the switch happens, and the redirect never leaves the site
    assert response.status_code == 302
    assert response["Location"] == expected
    assert client.session[SESSION_KEY] == second.pk


@pytest.mark.django_db
def test_the_viewers_time_zone_does_not_outlive_the_request(client, settings):
    # Given a signed-in user in Shanghai
    user = member()
    user.time_zone = "Asia/Shanghai"
    user.save()
    client.force_login(user)
    # When a page is served
    assert client.get("/market/").status_code == 200
    # Then the process is back on the default zone (the next request, or code after it, starts clean)
    from django.utils import timezone

    assert timezone.get_current_timezone_name() == settings.TIME_ZONE
