"""Price sorts never compare CNY fen with USD cents."""

import pytest

from marketplace.selectors import offer_search
from tests.factories import ClusterFactory, NodeFactory, OfferFactory

pytestmark = pytest.mark.django_db


def offer(price, currency):
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    return OfferFactory(cluster=cluster, price_per_card_hour_minor=price, currency=currency)


@pytest.mark.parametrize("sort", ["price", "-price", "price_per_ecu", "-price_per_ecu"])
def test_a_price_sort_without_a_currency_groups_by_currency_then_price(catalog, sort):
    # given offers in CNY and USD whose minor-unit numbers interleave
    cny_cheap, cny_dear = offer(2000, "CNY"), offer(3000, "CNY")
    usd_cheap, usd_dear = offer(250, "USD"), offer(2500, "USD")
    # when the buyer sorts by price with no currency filter
    ids = [row.offer_id for row in offer_search(sort=sort)[:]]
    # then CNY offers come first, then USD, each sorted by price in the asked direction
    if sort.startswith("-"):
        assert ids == [cny_dear.pk, cny_cheap.pk, usd_dear.pk, usd_cheap.pk]
    else:
        assert ids == [cny_cheap.pk, cny_dear.pk, usd_cheap.pk, usd_dear.pk]
