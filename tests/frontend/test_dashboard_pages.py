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
