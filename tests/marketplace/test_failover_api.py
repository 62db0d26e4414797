"""The API side of failover and reliability: accepted alternatives at booking, the reliability field
and the min_reliability filter in search and quotes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import ReliabilityEvent
from inventory.reliability import node_reliability_record
from marketplace.models import Reservation
from tests.factories import NodeFactory, OfferFactory

pytestmark = pytest.mark.django_db

SEARCH = "/api/market/offers/"
QUOTES = "/api/quotes/"


def iso(value):
    return value.isoformat()


@pytest.fixture
def two_providers(catalog):
    """Two H100 offers: a provider with a failover and two missed heartbeats on its only node (score
    86), and a spotless one (no record at all: 100)."""
    shaky = OfferFactory(cluster=NodeFactory().cluster)
    steady = OfferFactory(cluster=NodeFactory().cluster)
    node = shaky.cluster.nodes.get()
    now = timezone.now()
    node_reliability_record(node=node, kind=ReliabilityEvent.Kind.FAILOVER, cause="host_fault", at=now - timedelta(days=2))
    for hours in (1, 2):
        node_reliability_record(node=node, kind=ReliabilityEvent.Kind.HEARTBEAT_MISSED, cause="network", at=now - timedelta(hours=hours))
    return shaky, steady


def test_search_shows_the_providers_score_and_min_reliability_filters(buyer_client, two_providers):
    shaky, steady = two_providers
    everything = buyer_client.get(SEARCH).json()["results"]
    scores = {row["id"]: row["reliability"] for row in everything}
    assert scores == {shaky.pk: 86, steady.pk: 100}
    assert [row["id"] for row in buyer_client.get(SEARCH, {"min_reliability": 90}).json()["results"]] == [steady.pk]
    assert len(buyer_client.get(SEARCH, {"min_reliability": 86}).json()["results"]) == 2
    for bad in ("101", "-1", "high"):
        response = buyer_client.get(SEARCH, {"min_reliability": bad})
        assert response.status_code == 400 and "min_reliability" in response.json()["error"]["fields"]


def test_quotes_exclude_a_provider_below_min_reliability_with_its_reason(buyer_client, two_providers, soon):
    shaky, steady = two_providers
    body = {"cards": 8, "start": iso(soon), "duration_hours": 4, "currency": "CNY", "min_reliability": 90}
    quote = buyer_client.post(QUOTES, body, format="json").json()
    assert [p["offer"]["id"] for p in quote["placements"]] == [steady.pk]
    assert quote["placements"][0]["offer"]["reliability"] == 100
    excluded = {e["offer"]["id"]: [r["code"] for r in e["reasons"]] for e in quote["excluded"]}
    assert excluded[shaky.pk] == ["low_reliability"]
    response = buyer_client.post(QUOTES, {**body, "min_reliability": 200}, format="json")
    assert response.status_code == 400 and "min_reliability" in response.json()["error"]["fields"]


def test_a_booking_carries_the_accepted_alternatives_by_name(buyer_client, small_offer, soon):
    body = {"offer": small_offer.pk, "card_count": 8, "start": iso(soon), "end": iso(soon + timedelta(hours=4)),
            "accepted_alternatives": ["A100 SXM4 80GB", "nvidia-h100-pcie-80gb"]}
    response = buyer_client.post("/api/reservations/", body, format="json")
    assert response.status_code == 201, response.json()
    assert sorted(response.json()["accepted_alternatives"]) == ["A100 SXM4 80GB", "H100 PCIe 80GB"]
    assert response.json()["downtime"] == []
    reservation = Reservation.objects.get(pk=response.json()["id"])
    assert sorted(reservation.accepted_alternatives.values_list("slug", flat=True)) == ["nvidia-a100-sxm4-80gb", "nvidia-h100-pcie-80gb"]


def test_an_unknown_alternative_is_a_400_and_books_nothing(buyer_client, small_offer, soon):
    body = {"offer": small_offer.pk, "card_count": 8, "start": iso(soon), "end": iso(soon + timedelta(hours=4))}
    for bad in (["Quantum Abacus 9000"], "A100 SXM4 80GB", [["nested"]]):
        response = buyer_client.post("/api/reservations/", {**body, "accepted_alternatives": bad}, format="json")
        assert response.status_code == 400, (bad, response.json())
        assert "accepted_alternatives" in response.json()["error"]["fields"]
    assert not Reservation.objects.exists()
    # by default, none
    response = buyer_client.post("/api/reservations/", body, format="json")
    assert response.status_code == 201 and response.json()["accepted_alternatives"] == []


def test_the_search_page_filters_by_min_reliability_and_shows_the_score(client, buyer, two_providers):
    shaky, steady = two_providers
    client.force_login(buyer)
    body = client.get("/market/", {"min_reliability": 90}).content.decode()
    assert f'data-offer="{steady.pk}"' in body and f'data-offer="{shaky.pk}"' not in body
    assert "reliability 100/100" in body
    everything = client.get("/market/").content.decode()
    assert "reliability 86/100" in everything
    assert "reliability 86/100" in client.get(f"/market/offers/{shaky.pk}/").content.decode()


def test_the_provider_sees_the_node_and_organization_scores_on_their_pages(client, two_providers):
    from tests.factories import MembershipFactory

    shaky, _ = two_providers
    node = shaky.cluster.nodes.get()
    owner = MembershipFactory(organization=shaky.cluster.site.owner).user
    client.force_login(owner)
    node_page = client.get(f"/provider/nodes/{node.pk}/").content.decode()
    assert "Reliability: 86/100" in node_page and "Failover (work moved off the node)" in node_page
    site_page = client.get(f"/provider/sites/{shaky.cluster.site.pk}/").content.decode()
    assert "86/100" in site_page
