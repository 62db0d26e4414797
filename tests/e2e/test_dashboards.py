"""In a real browser: the dashboards draw their charts (Chart.js from npm, served as a static file)
and keep the figures in a table beside each chart."""

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from inventory.management.demo_network import DEMO_LOGINS, DEMO_PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(catalog):
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())


def sign_in(page, email):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-testid="signed-in-as"]')


def charts_drawn(page) -> list[dict]:
    """Each chart canvas: drawn by Chart.js (it registers the canvas) and with pixels of its size."""
    return page.eval_on_selector_all(
        "canvas[data-chart]",
        "canvases => canvases.map(c => ({id: c.dataset.chart, drawn: !!(window.Chart && window.Chart.getChart(c)),"
        " width: c.width, height: c.height}))",
    )


@pytest.mark.parametrize(
    ("role", "url", "table"),
    [
        ("operator", "/network/", "by-vendor"),
        ("buyer", "/market/dashboard/", "spend-table"),
        ("provider", "/provider/dashboard/", "site-model-table"),
    ],
)
def test_each_dashboard_draws_its_charts_with_a_table_behind_them(page, demo, role, url, table):
    assert User.objects.filter(email=DEMO_LOGINS[role]).exists()
    sign_in(page, DEMO_LOGINS[role])
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("canvas[data-chart]")
    page.wait_for_function("() => window.Chart && [...document.querySelectorAll('canvas[data-chart]')]"
                           ".every(c => window.Chart.getChart(c))")
    charts = charts_drawn(page)
    assert charts and all(chart["drawn"] and chart["width"] > 0 and chart["height"] > 0 for chart in charts), charts
    assert page.locator(f'[data-testid="{table}"] tbody tr').count() > 0
    assert errors == []


def test_the_landing_page_draws_the_public_summary_for_anonymous_visitors(page, demo):
    page.goto("/")
    page.wait_for_function("() => window.Chart && window.Chart.getChart(document.querySelector('canvas[data-chart]'))")
    assert page.locator('[data-testid="dash-listed-cards"]').inner_text().strip() != ""
