"""The landing page's network totals count only capacity a node agent has verified (its report
matches the listing, in an online site); what nobody has verified is shown apart, as the pipeline."""

import re
from decimal import Decimal

import pytest
from django.core.cache import cache

from inventory.models import Node, Site
from inventory.selectors import NETWORK_TOTALS_CACHE_KEY, network_totals
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, SiteFactory, accelerator

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed_network(catalog):
    """One verified node among imported, flagged, retired and not-yet-online capacity."""
    h100 = accelerator("nvidia-h100-sxm5-80gb")
    ascend = accelerator("huawei-ascend-910b3")
    # An online site: one node whose agent reported matching hardware (8 H100, offered) ...
    online = ClusterFactory(site=SiteFactory(lifecycle=Site.Lifecycle.ONLINE))
    NodeFactory(cluster=online, accelerator_model=h100, card_count=8)
    OfferFactory(cluster=online, accelerator_model=h100)
    # ... an imported node whose agent never reported (8 Ascend) ...
    NodeFactory(cluster=online, accelerator_model=ascend, card_count=8, status=Node.Status.REGISTERED)
    # ... a node whose agent contradicts the listing (flagged, 4 H100) ...
    NodeFactory(cluster=online, accelerator_model=h100, card_count=4, mismatch_reason="agent sees 2 cards, listing says 4")
    # ... and a retired node (gone: counted nowhere)
    NodeFactory(cluster=online, accelerator_model=h100, card_count=8, status=Node.Status.RETIRED)
    # A site declared online by hand whose only node never reported (4 Ascend)
    by_hand = ClusterFactory(site=SiteFactory(lifecycle=Site.Lifecycle.ONLINE))
    NodeFactory(cluster=by_hand, accelerator_model=ascend, card_count=4, status=Node.Status.REGISTERED)
    # A planned site with a listed node, an empty site under construction, a retired site
    NodeFactory(cluster=ClusterFactory(site=SiteFactory(lifecycle=Site.Lifecycle.PLANNED)), card_count=8, status=Node.Status.REGISTERED)
    SiteFactory(lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION)
    NodeFactory(cluster=ClusterFactory(site=SiteFactory(lifecycle=Site.Lifecycle.RETIRED)), card_count=8)
    return h100


def test_the_headline_counts_only_capacity_an_agent_verified(mixed_network):
    totals = network_totals()
    assert totals["sites"] == 1
    assert totals["cards"] == 8
    assert totals["cards_by_vendor"] == [{"vendor": "NVIDIA", "cards": 8}]
    assert totals["architectures"] == 1
    assert totals["listed_ecu"] == Decimal(8) * mixed_network.ecu_per_card


def test_the_pipeline_shows_what_is_being_built_and_what_no_agent_has_verified(mixed_network):
    assert network_totals()["pipeline"] == {
        "sites_planned": 1,
        "sites_under_construction": 1,
        "sites_awaiting_agents": 1,
        "nodes_unverified": 4,  # imported, flagged, the hand-declared site's node, the planned site's node
        "cards_unverified": 8 + 4 + 4 + 8,
    }


def test_the_landing_page_shows_the_verified_totals_and_the_pipeline_apart(client, mixed_network):
    cache.delete(NETWORK_TOTALS_CACHE_KEY)
    page = client.get("/").content.decode()

    def shown(testid):
        return re.search(rf'data-testid="{testid}">([^<]*)<', page).group(1)

    assert shown("total-sites") == "1"
    assert shown("total-cards") == "8"
    assert shown("pipeline-sites-building") == "2"
    assert shown("pipeline-sites-awaiting") == "1"
    assert shown("pipeline-cards") == "24"
    cache.delete(NETWORK_TOTALS_CACHE_KEY)
