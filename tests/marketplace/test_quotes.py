"""Quotes: ranked placements across models, clusters and owners, and a reason for every exclusion."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from inventory.models import MaintenanceWindow, Node, Site
from marketplace.selectors import Exclusion, quote_build
from marketplace.services import reservation_create
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, SiteFactory, accelerator, member, province

pytestmark = pytest.mark.django_db


def offer_with(nodes=1, model="nvidia-h100-sxm5-80gb", price=2500, currency="CNY", site=None, **offer_kwargs):
    cluster = ClusterFactory(site=site) if site else ClusterFactory()
    created = [NodeFactory(cluster=cluster, accelerator_model=accelerator(model)) for _ in range(nodes)]
    return OfferFactory(cluster=cluster, accelerator_model=accelerator(model), price_per_card_hour_minor=price,
                        currency=currency, **offer_kwargs), created


def reasons_for(quote, offer):
    for excluded in quote.excluded:
        if excluded.offer.offer_id == offer.pk:
            return {reason.code for reason in excluded.reasons}
    return set()


def quote(soon, **kwargs):
    kwargs.setdefault("cards", 8)
    return quote_build(start=soon, end=soon + timedelta(hours=24), **kwargs)


def test_placements_are_ranked_by_price_per_ecu_hour_across_models(catalog, soon):
    h100, _ = offer_with(price=2500)  # 25.28 CNY per ECU-hour
    ascend, _ = offer_with(model="huawei-ascend-910b-generic-atlas-800t-a2", price=900)  # 28.13 per ECU-hour
    cheap_h100, _ = offer_with(price=2000)
    result = quote(soon)
    assert [p.offer.offer_id for p in result.placements] == [cheap_h100.pk, h100.pk, ascend.pk]
    first = result.placements[0]
    assert first.total_price_minor == 2000 * 8 * 24
    assert first.price_per_ecu_hour_minor == 2022  # 2000 / 0.989 = 2022.2..., half up to a whole fen
    assert result.excluded == []


def test_not_enough_free_cards_in_the_window(catalog, soon):
    offer, _ = offer_with(nodes=1)
    reservation_create(organization=member().memberships.get().organization, created_by=None, offer=offer,
                       card_count=4, start=soon + timedelta(hours=2), end=soon + timedelta(hours=3))
    result = quote(soon)
    assert reasons_for(result, offer) == {Exclusion.NOT_ENOUGH_FREE_CARDS}
    message = result.excluded[0].reasons[0].message
    assert "Only 4 of the 8 cards" in message
    # outside that booking the cards are free
    assert quote(soon + timedelta(days=2)).placements


def test_memory_too_small_and_stack_not_accepted_are_both_listed(catalog, soon):
    offer, _ = offer_with(model=_small_memory_slug())
    result = quote(soon, min_memory_gb=64, stacks=["cann"])
    assert {Exclusion.MEMORY_TOO_SMALL, Exclusion.STACK_NOT_ACCEPTED} <= reasons_for(result, offer)


def test_region_excluded(catalog, soon):
    offer, _ = offer_with(site=SiteFactory(province=province("CN-GZ")))
    assert reasons_for(quote(soon, provinces=["CN-BJ"]), offer) == {Exclusion.REGION_EXCLUDED}
    assert quote(soon, provinces=["cn-gz"]).placements


def test_over_budget_by_total_or_by_ecu_hour(catalog, soon):
    offer, _ = offer_with(price=2500)
    assert reasons_for(quote(soon, max_total_price_minor=100_000), offer) == {Exclusion.OVER_BUDGET}
    assert reasons_for(quote(soon, max_price_per_ecu_hour_minor=Decimal(2000)), offer) == {Exclusion.OVER_BUDGET}
    assert quote(soon, max_total_price_minor=2500 * 8 * 24).placements


def test_site_not_online(catalog, soon):
    offer, _ = offer_with(site=SiteFactory(lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION))
    assert reasons_for(quote(soon), offer) == {Exclusion.SITE_NOT_ONLINE}


def test_node_flagged_and_node_not_online_explain_the_missing_cards(catalog, soon):
    offer, nodes = offer_with(nodes=2)
    Node.objects.filter(pk=nodes[0].pk).update(mismatch_reason="agent reports 4 cards")
    Node.objects.filter(pk=nodes[1].pk).update(status=Node.Status.OFFLINE)
    result = quote(soon, cards=9)
    assert reasons_for(result, offer) == {Exclusion.NOT_ENOUGH_FREE_CARDS, Exclusion.NODE_FLAGGED, Exclusion.NODE_NOT_ONLINE}


def test_maintenance_in_the_window(catalog, soon):
    offer, _ = offer_with(nodes=1)
    MaintenanceWindow.objects.create(cluster=offer.cluster, period=DateTimeTZRange(soon, soon + timedelta(hours=1), "[)"))
    assert reasons_for(quote(soon), offer) == {Exclusion.NOT_ENOUGH_FREE_CARDS, Exclusion.MAINTENANCE}


def test_a_not_rated_model_is_excluded_when_the_request_is_in_ecu(catalog, soon):
    slug = _not_rated_slug()
    offer, _ = offer_with(model=slug)
    assert reasons_for(quote(soon, cards=None, total_ecu=Decimal("2")), offer) == {Exclusion.MODEL_NOT_RATED}
    # by card count it is a placement, ranked after the rated ones, with no ECU price
    placement = quote(soon).placements[0]
    assert placement.offer.offer_id == offer.pk and placement.price_per_ecu_hour_minor is None


def test_total_ecu_is_turned_into_cards_per_model(catalog, soon):
    offer_with(nodes=1)  # H100: 0.989 ECU per card
    placement = quote(soon, cards=None, total_ecu=Decimal("3")).placements[0]
    assert placement.card_count == 4 and placement.total_ecu == Decimal("3.9560")


def test_a_different_currency_is_never_compared(catalog, soon):
    offer, _ = offer_with(currency="USD", price=300)
    assert reasons_for(quote(soon, currency="CNY", max_total_price_minor=10**9), offer) == {Exclusion.DIFFERENT_CURRENCY}


def test_duration_outside_the_offer_limits_and_rentable_period(catalog, soon):
    short, _ = offer_with(max_duration_hours=12)
    window, _ = offer_with(rentable_period=DateTimeTZRange(soon + timedelta(days=5), None, "[)"))
    result = quote(soon)
    assert reasons_for(result, short) == {Exclusion.DURATION_OUT_OF_RANGE}
    assert reasons_for(result, window) == {Exclusion.OUTSIDE_RENTABLE_PERIOD}


def test_no_offer_disappears_and_every_reason_has_a_label(catalog, soon):
    offers = [offer_with()[0], offer_with(currency="USD")[0], offer_with(site=SiteFactory(lifecycle="planned"))[0]]
    result = quote(soon)
    seen = {p.offer.offer_id for p in result.placements} | {e.offer.offer_id for e in result.excluded}
    assert seen == {o.pk for o in offers}
    assert all(e.reasons for e in result.excluded)
    assert set(Exclusion.LABELS) == set(Exclusion.ALL) and len(Exclusion.ALL) == 15  # 15th: low_reliability (failover branch)


def _small_memory_slug():
    from inventory.models import AcceleratorModel

    return AcceleratorModel.objects.filter(memory_gb__lt=64, stack="cuda").order_by("memory_gb").first().slug


def _not_rated_slug():
    from inventory.models import AcceleratorModel

    return AcceleratorModel.objects.filter(ecu_per_card__isnull=True).order_by("id").first().slug
