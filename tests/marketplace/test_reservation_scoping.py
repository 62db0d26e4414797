"""A reservation is visible only to the buyer organization that made it: for everyone else - another
buyer, the provider whose cards it holds - every endpoint and page answers 404 and changes nothing."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_create
from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from marketplace.services import reservation_create
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def reservation(small_offer, buyer, soon):
    organization = buyer.memberships.get().organization
    reservation, _ = reservation_create(organization=organization, created_by=buyer, offer=small_offer, card_count=4,
                                        start=soon, end=soon + timedelta(hours=4))
    return reservation


def snapshot():
    return (list(Reservation.objects.order_by("pk").values_list("pk", "status", "end", "released_at")),
            list(DeviceAllocation.objects.order_by("pk").values_list("pk", "is_active")))


def api_for(user):
    client = APIClient()
    _, key = api_token_create(user=user, organization=user.memberships.get().organization, name="scoping")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def outsiders(small_offer):
    """Another buyer, and a member of the provider organization whose cards are booked."""
    return [member(kind="buyer"), member(organization=small_offer.cluster.site.owner)]


def test_every_reservation_endpoint_answers_404_to_other_organizations(reservation, small_offer, soon):
    before = snapshot()
    for outsider in outsiders(small_offer):
        # given a caller of another organization, with its own API key
        api = api_for(outsider)
        # when it reads or acts on the reservation, then it does not exist for them
        assert api.get(f"/api/reservations/{reservation.pk}/").status_code == 404
        for action, body in (("cancel", None), ("release", None), ("extend", {"end": (soon + timedelta(hours=8)).isoformat()})):
            response = api.post(f"/api/reservations/{reservation.pk}/{action}/", body, format="json")
            missing = api.post(f"/api/reservations/{reservation.pk + 1000}/{action}/", body, format="json")
            # a buyer gets 404; a provider member is refused booking actions outright (403) - either
            # way exactly as for an id that does not exist, so the answer reveals nothing
            assert response.status_code == missing.status_code, (action, response.content, missing.content)
            assert response.status_code == (404 if outsider.memberships.get().organization.is_buyer else 403)
        assert reservation.pk not in [r["id"] for r in api.get("/api/reservations/").json()["results"]]
    # and nothing changed
    assert snapshot() == before


def test_every_reservation_page_answers_404_to_other_organizations(client, reservation, small_offer, soon):
    before = snapshot()
    for outsider in outsiders(small_offer):
        client.force_login(outsider)
        assert client.get(f"/market/reservations/{reservation.pk}/").status_code == 404
        for action in ("cancel", "release", "extend"):
            response = client.post(f"/market/reservations/{reservation.pk}/{action}/",
                                   {"end": (soon + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M")})
            assert response.status_code == 404, (action, response.status_code)
        assert f"/market/reservations/{reservation.pk}/" not in client.get("/market/reservations/").content.decode()
    assert snapshot() == before


def test_a_colleague_in_the_buyer_organization_does_see_it(reservation):
    # the control: the rule hides reservations from other organizations, not from the buyer's own members
    colleague = member(organization=reservation.buyer, role="member")
    assert api_for(colleague).get(f"/api/reservations/{reservation.pk}/").status_code == 200
