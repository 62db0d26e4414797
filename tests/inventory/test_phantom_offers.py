"""Phantom offers: an offer sells cards of one model in one cluster, so one for a model the cluster
has no cards of is refused (API and form, create and edit), and an offer left without cards (its
nodes retired) is never listed on the market as "0 / 0"."""

import re

import pytest
from rest_framework.test import APIClient

from inventory import services
from inventory.market_selectors import offers_listed
from inventory.models import Node, Offer
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, accelerator, member

pytestmark = pytest.mark.django_db

SEARCH = "/api/market/offers/"


def field_error(response, field):
    match = re.search(rf'<p class="field-error" data-field="{field}">([^<]*)</p>', response.content.decode())
    return match.group(1) if match else None


def test_offering_a_model_the_cluster_has_no_cards_of_is_a_400_on_the_model(api, provider):
    # Given a cluster with only H100 cards
    response = api.post(
        "/api/offers/",
        {"cluster": provider.cluster.pk, "accelerator_model": "huawei-ascend-910b3", "price_per_card_hour": "10"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["accelerator_model"] == [
        "This cluster has no Ascend 910B3 cards (it has H100 SXM5 80GB): list or import the nodes first, then offer them."
    ]
    assert not Offer.objects.filter(accelerator_model__slug="huawei-ascend-910b3").exists()


def test_cards_on_retired_nodes_do_not_count_and_registered_ones_do(provider):
    # Given a cluster whose Ascend node is retired, then one whose Ascend node is listed but not yet reported
    ascend = accelerator("huawei-ascend-910b3")
    gone = NodeFactory(cluster=provider.cluster, accelerator_model=ascend, status=Node.Status.RETIRED)
    with pytest.raises(services.ValidationError) as error:
        services.offer_create(cluster=provider.cluster, accelerator_model=ascend, price_per_card_hour_minor=1000)
    assert "accelerator_model" in error.value.message_dict
    NodeFactory(cluster=gone.cluster, accelerator_model=ascend, status=Node.Status.REGISTERED)
    offer = services.offer_create(cluster=provider.cluster, accelerator_model=ascend, price_per_card_hour_minor=1000)
    assert offer.is_active


def test_an_empty_cluster_says_it_has_no_nodes(api, provider):
    empty = ClusterFactory(site=provider.site, name="empty")
    response = api.post(
        "/api/offers/", {"cluster": empty.pk, "accelerator_model": "nvidia-h100-sxm5-80gb", "price_per_card_hour": "10"}, format="json"
    )
    assert response.status_code == 400
    assert "(it has no nodes listed)" in response.json()["error"]["fields"]["accelerator_model"][0]


def test_editing_an_offer_whose_cards_are_all_retired_is_refused(api, provider):
    Node.objects.filter(pk=provider.node.pk).update(status=Node.Status.RETIRED)
    response = api.patch(f"/api/offers/{provider.offer.pk}/", {"price_per_card_hour": "30"}, format="json")
    assert response.status_code == 400
    assert "This cluster has no H100 SXM5 80GB cards" in response.json()["error"]["fields"]["accelerator_model"][0]
    assert Offer.objects.get(pk=provider.offer.pk).price_per_card_hour_minor == 2500


def test_the_offer_form_shows_the_refusal_next_to_the_model(client, provider):
    client.force_login(provider.user)
    response = client.post(f"/provider/clusters/{provider.cluster.pk}/offers/new/", {
        "accelerator_model": accelerator("huawei-ascend-910b3").pk, "price_per_card_hour": "10", "currency": "CNY",
        "min_duration_hours": 1, "max_duration_hours": 10})
    assert response.status_code == 200
    assert field_error(response, "accelerator_model").startswith("This cluster has no Ascend 910B3 cards")
    assert Offer.objects.count() == 1


def test_the_offer_edit_form_shows_the_refusal(client, provider):
    client.force_login(provider.user)
    Node.objects.filter(pk=provider.node.pk).update(status=Node.Status.RETIRED)
    response = client.post(f"/provider/offers/{provider.offer.pk}/edit/", {
        "price_per_card_hour": "30", "currency": "CNY", "min_duration_hours": 1, "max_duration_hours": 10})
    assert response.status_code == 200
    assert "This cluster has no H100 SXM5 80GB cards" in response.content.decode()
    assert Offer.objects.get(pk=provider.offer.pk).price_per_card_hour_minor == 2500


def test_an_offer_without_cards_is_not_listed_on_the_market(catalog):
    # Given an offer with cards, one whose only node was retired, and one created without any node
    # (as before the refusal existed)
    listed = OfferFactory(cluster=NodeFactory().cluster)
    retired_node = NodeFactory(status=Node.Status.RETIRED)
    emptied = OfferFactory(cluster=retired_node.cluster)
    phantom = OfferFactory(cluster=ClusterFactory())
    # Then only the first is on the market: in the selector, the search API and the market page
    assert list(offers_listed()) == [listed]
    client = APIClient()
    client.force_login(member(kind="buyer"))
    results = client.get(SEARCH).json()["results"]
    assert [row["id"] for row in results] == [listed.pk]
    page = client.get("/market/").content.decode()
    assert f"/market/offers/{listed.pk}/" in page
    assert f"/market/offers/{emptied.pk}/" not in page and f"/market/offers/{phantom.pk}/" not in page


def test_retired_cards_are_not_counted_in_an_offers_capacity(catalog):
    cluster = NodeFactory(card_count=8).cluster
    NodeFactory(cluster=cluster, card_count=8, status=Node.Status.RETIRED)
    offer = OfferFactory(cluster=cluster)
    client = APIClient()
    client.force_login(member(kind="buyer"))
    [row] = client.get(SEARCH).json()["results"]
    assert row["id"] == offer.pk
    assert row["capacity"]["cards_total"] == 8
