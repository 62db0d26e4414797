"""The dashboard pages render for those who may open them, each chart with its table, and the
charting library (from npm, never committed) is found by the static files finders."""

import json
import re
from io import StringIO

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from accounts.models import User
from inventory.management.demo_network import DEMO_LOGINS

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_network(catalog):
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())


def test_chart_js_comes_from_node_modules_and_is_not_committed():
    found = finders.find("vendor/chart.js/chart.umd.js")
    assert found and "node_modules" in found
    # installed by npm ci from the lock, never part of the repository
    lock = json.loads(open("package-lock.json").read())
    assert lock["packages"]["node_modules/chart.js"]["version"]
    assert "node_modules/" in open(".gitignore").read().split()


@pytest.mark.parametrize(
    ("role", "url", "charts", "tables"),
    [
        ("operator", "/network/", 6, ["network-history-table", "hub-grid", "pipeline-table", "by-hub", "by-province",
                                      "by-vendor", "by-model", "by-provider"]),
        ("buyer", "/market/dashboard/", 1, ["spend-table", "active-table", "upcoming-table"]),
        ("provider", "/provider/dashboard/", 2, ["site-model-table", "provider-history-table", "reliability"]),
    ],
)
def test_a_dashboard_renders_its_charts_each_with_a_table(client, demo_network, role, url, charts, tables):
    client.force_login(User.objects.get(email=DEMO_LOGINS[role]))
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    canvases = re.findall(r'<canvas data-chart="([^"]+)"', body)
    assert len(canvases) == charts
    for chart_id in canvases:
        config = json.loads(re.search(rf'<script id="{chart_id}" type="application/json">(.*?)</script>', body, re.S).group(1))
        assert config["data"]["datasets"]
    for testid in tables:
        assert f'data-testid="{testid}"' in body, testid
    assert '/static/vendor/chart.js/chart.umd.js' in body


def test_the_landing_page_shows_the_public_summary_to_anonymous_visitors(client, demo_network):
    body = client.get("/").content.decode()
    assert 'data-testid="dash-listed-cards"' in body and 'data-testid="public-history-table"' in body
    # the public summary names no provider (the by-provider table is for operators)
    assert 'data-testid="by-provider"' not in body


def test_the_navigation_links_each_dashboard_only_for_those_who_can_open_it(client, demo_network):
    expected = {"buyer": "/market/dashboard/", "provider": "/provider/dashboard/", "operator": "/network/"}
    for role, email in DEMO_LOGINS.items():
        client.force_login(User.objects.get(email=email))
        header = client.get("/").content.decode().split('<header class="topbar">')[1].split("</header>")[0]
        for other_role, link in expected.items():
            assert (f'href="{link}"' in header) == (role == other_role), (role, link)


@pytest.fixture
def moved_reservation(catalog):
    """A buyer's reservation booked on provider A's offer and served, after a move, on provider B's node
    (30 h ago to 20 h ago on A, 20 h ago to 10 h ago on B), at 25.00 per card-hour on 8 cards."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.models import ReservationSegment
    from tests.billing.conftest import served
    from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory

    offers = []
    for _ in range(2):
        cluster = ClusterFactory()
        NodeFactory(cluster=cluster)
        offers.append(OfferFactory(cluster=cluster, price_per_card_hour_minor=2500))
    now = timezone.now()
    buyer = OrganizationFactory(kind="buyer")
    reservation = served(buyer=buyer, offer=offers[0], periods=[(now - timedelta(hours=30), now - timedelta(hours=20))])
    node = offers[1].cluster.nodes.get()
    ReservationSegment.objects.create(  # the move: served on B's node from then on
        reservation=reservation, node=node, device_ids=list(node.devices.order_by("index").values_list("pk", flat=True)[:8]),
        provider=offers[1].cluster.site.owner, offer=offers[1], started_at=now - timedelta(hours=20), ended_at=now - timedelta(hours=10),
        price_per_card_hour_minor=2500, currency="CNY")
    return {"buyer": buyer, "offers": offers, "reservation": reservation}


def test_provider_earnings_after_a_move_land_in_the_row_where_the_time_was_served(moved_reservation):
    from marketplace import dashboard

    offer_a, offer_b = moved_reservation["offers"]
    for offer in (offer_a, offer_b):
        provider = offer.cluster.site.owner
        rows = dashboard.provider_dashboard(organization=provider)["per_site_model"]
        earned = {(row["site"], row["model"]): row["earnings"] for row in rows if row["earnings"]}
        # each provider earns its own 10 h x 8 cards x 25.00, in the row of its own site and model
        assert earned == {(offer.cluster.site.name, offer.accelerator_model.name): [("CNY", 10 * 8 * 2500)]}


@pytest.mark.parametrize(("role", "sees_money"), [("owner", True), ("finance_viewer", True), ("member", False)])
def test_dashboards_show_money_only_to_those_who_may_see_the_finances(client, moved_reservation, role, sees_money):
    from inventory.pricing import format_money
    from tests.factories import member

    buyer_user = member(role=role, organization=moved_reservation["buyer"])
    client.force_login(buyer_user)
    body = client.get("/market/dashboard/").content.decode()
    assert 'data-testid="active-table"' in body  # usage is for every member
    assert ('data-testid="spend-table"' in body) is sees_money
    assert ('data-chart="buyer-spend"' in body) is sees_money
    provider = moved_reservation["offers"][1].cluster.site.owner
    client.force_login(member(role=role, organization=provider))
    body = client.get("/provider/dashboard/").content.decode()
    assert 'data-testid="site-model-table"' in body
    assert ("Earnings (30 days)" in body) is sees_money
    assert (format_money(10 * 8 * 2500, "CNY") in body) is sees_money
