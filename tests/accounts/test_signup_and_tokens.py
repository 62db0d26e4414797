import pytest

from accounts.models import ApiToken, Membership, Organization, User
from accounts.services import api_token_create, api_token_revoke
from tests.factories import DEFAULT_PASSWORD, member


@pytest.mark.django_db
def test_signing_up_creates_the_user_and_an_organization_they_own(client):
    response = client.post(
        "/accounts/signup/",
        {"full_name": "Li Wei", "email": "Li.Wei@Example.test", "password": "a-long-unusual-passphrase",
         "organization_name": "Deep Startup", "kind": "buyer"},
    )
    assert response.status_code == 302
    user = User.objects.get(email="li.wei@example.test")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.organization.name == "Deep Startup"
    assert membership.organization.kind == "buyer"
    assert client.get("/api/me/").json()["email"] == "li.wei@example.test"  # signed in


@pytest.mark.django_db
def test_sign_up_errors_are_shown_next_to_the_field_and_create_nothing(client):
    existing = member()
    response = client.post(
        "/accounts/signup/",
        {"full_name": "X", "email": existing.email, "password": "123", "organization_name": "", "kind": "pirate"},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) >= {"password", "organization_name", "kind"}
    assert User.objects.count() == 1 and Organization.objects.count() == 1


@pytest.mark.django_db
def test_sign_in_and_out_in_the_browser_flow(client):
    user = member()
    response = client.post("/accounts/login/", {"username": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302
    assert client.get("/api/me/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/api/me/").status_code == 401
    bad = client.post("/accounts/login/", {"username": user.email, "password": "wrong"})
    assert bad.status_code == 200 and bad.context["form"].non_field_errors()


@pytest.mark.django_db
def test_an_api_token_is_hashed_at_rest_shown_once_and_acts_for_its_organization(client):
    user = member(kind="provider")
    organization = user.memberships.get().organization
    token, key = api_token_create(user=user, organization=organization, name="ci")
    stored = ApiToken.objects.get(pk=token.pk)
    assert key not in (stored.key_hash, stored.prefix) and stored.key_hash != key
    response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert response.json()["organization"] == organization.name
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


@pytest.mark.django_db
def test_a_revoked_or_wrong_token_is_refused_with_the_api_error_shape(client):
    user = member()
    token, key = api_token_create(user=user, organization=user.memberships.get().organization, name="laptop")
    api_token_revoke(token=token)
    for header in (f"Token {key}", "Token cf_not-a-real-key-at-all-000000", "Token", "Token a b"):
        response = client.get("/api/me/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] in {"authentication_failed", "not_authenticated"}
        assert response.json()["error"]["message"]


@pytest.mark.django_db
def test_the_tokens_page_creates_shows_once_and_revokes(client):
    user = member()
    client.force_login(user)
    created = client.post("/accounts/tokens/", {"name": "build-server"})
    key = created.context["new_key"]
    assert key.startswith("cf_")
    assert key not in client.get("/accounts/tokens/").content.decode()  # shown once
    token = ApiToken.objects.get(user=user)
    client.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


@pytest.mark.django_db
def test_nobody_can_revoke_someone_elses_token(client):
    owner, intruder = member(), member()
    token, key = api_token_create(user=owner, organization=owner.memberships.get().organization, name="mine")
    client.force_login(intruder)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.django_db
def test_times_without_an_offset_are_read_in_the_key_holders_zone_as_on_the_pages(client):
    from tests.factories import NodeFactory, OfferFactory

    user = member(kind="buyer")
    user.time_zone = "Asia/Shanghai"
    user.save()
    _, key = api_token_create(user=user, organization=user.memberships.get().organization, name="tz")
    node = NodeFactory()
    OfferFactory(cluster=node.cluster, accelerator_model=node.accelerator_model)
    response = client.post(
        "/api/quotes/", {"cards": 2, "start": "2030-03-01T10:00", "duration_hours": 2, "currency": "CNY"},
        content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}",
    )
    assert response.status_code == 200
    assert response.json()["start"] == "2030-03-01T10:00:00+08:00"
