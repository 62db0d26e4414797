"""One rule for the price per ECU-hour (inventory.pricing): every page and API shows the same figure,
and the max-price filter compares that figure, not the unrounded ratio."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from inventory.pricing import major_to_minor, price_per_ecu_hour_minor
from marketplace.forms import OfferSearchForm
from marketplace.selectors import quote_build
from tests.factories import member

pytestmark = pytest.mark.django_db

SEARCH = "/api/market/offers/"


@pytest.fixture
def offer_at_20(small_offer):
    # 20.00 CNY per card-hour on an H100 (0.989 ECU): 2022.245... fen per ECU-hour, shown as 20.22
    small_offer.price_per_card_hour_minor = 2000
    small_offer.save()
    return small_offer


def test_every_view_of_an_offer_shows_the_same_price_per_ecu_hour(offer_at_20, buyer_client, soon):
    # given the one rule's figure
    expected = price_per_ecu_hour_minor(price_per_card_hour_minor=2000, ecu_per_card=offer_at_20.accelerator_model.ecu_per_card)
    assert expected == 2022
    # when the buyer searches, asks a quote and books, and the provider reads its offer
    searched = buyer_client.get(SEARCH).json()["results"][0]["price_per_ecu_hour_minor"]
    quoted = quote_build(start=soon, end=soon + timedelta(hours=4), cards=8).placements[0].price_per_ecu_hour_minor
    booked = buyer_client.post("/api/reservations/", {"offer": offer_at_20.pk, "card_count": 8, "start": soon.isoformat(),
                                                      "end": (soon + timedelta(hours=4)).isoformat()}, format="json").json()
    provider = APIClient()
    provider.force_login(member(kind="provider", organization=offer_at_20.cluster.site.owner))
    listed = provider.get(f"/api/offers/{offer_at_20.pk}/").json()["price_per_ecu_hour"]
    page = APIClient().get("/market/").content.decode()
    # then all of them show 2022 fen = 20.22 CNY
    assert searched == quoted == booked["price_per_ecu_hour_minor"] == 2022
    assert listed == "20.22" and "CNY 20.22" in page


def test_the_max_price_per_ecu_hour_filter_matches_the_shown_figure(offer_at_20, buyer_client):
    # given an offer shown at 20.22 CNY per ECU-hour (exactly 20.2224...)
    # when the buyer filters at the shown figure, then it is found; a fen less, it is not
    assert buyer_client.get(SEARCH, {"max_price_per_ecu_hour": "20.22", "currency": "CNY"}).json()["count"] == 1
    assert buyer_client.get(SEARCH, {"max_price_per_ecu_hour": "20.21", "currency": "CNY"}).json()["count"] == 0


def test_filter_input_uses_the_one_major_to_minor_conversion():
    # given a filter typed in major units, when the form converts it, then inventory's rule decides
    form = OfferSearchForm({"max_price_per_ecu_hour": "20.22", "max_price_per_card_hour": "0.29", "currency": "CNY"})
    assert form.is_valid(), form.errors
    kwargs = form.search_kwargs()
    assert kwargs["max_price_per_ecu_hour_minor"] == major_to_minor("20.22") == 2022
    assert kwargs["max_price_per_card_hour_minor"] == 29
