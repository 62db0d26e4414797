"""In a real browser at a phone's width (390 px): the market search fits the screen, vendor and model are
chosen from the catalog, and an empty result says what to try."""

import pytest

from accounts.models import Organization
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, accelerator, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport=PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def market(catalog):
    h100_cluster = ClusterFactory(name="gz-ib-1")
    NodeFactory(cluster=h100_cluster)
    OfferFactory(cluster=h100_cluster)
    ascend = accelerator("huawei-ascend-910b-generic-atlas-800t-a2")
    ascend_cluster = ClusterFactory(name="gz-roce-1")
    NodeFactory(cluster=ascend_cluster, accelerator_model=ascend)
    OfferFactory(cluster=ascend_cluster, accelerator_model=ascend, price_per_card_hour_minor=900)
    return member(organization=OrganizationFactory(name="A Startup With A Rather Long Name", kind=Organization.Kind.BUYER))


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_the_search_page_fits_a_390_px_screen_with_results_and_without(phone, market):
    # given an anonymous visitor on a phone, when they open the market with two offers listed
    phone.goto("/market/")
    assert phone.locator('[data-testid="offers"] tbody tr').count() == 2
    # then nothing is wider than the screen
    assert overflow(phone) <= 390
    # and when they choose Huawei from the catalog's vendors, only the Ascend offer is left, still fitting
    phone.get_by_label("Vendor").select_option("Huawei (HiSilicon)")
    phone.get_by_role("button", name="Search").click()
    rows = phone.locator('[data-testid="offers"] tbody tr')
    assert rows.count() == 1 and "Ascend 910B" in rows.first.inner_text()
    assert "vendor=Huawei" in phone.url
    assert overflow(phone) <= 390
    # and an empty result explains itself, and its "remove" link brings the offers back
    phone.get_by_label("Min free cards").fill("64")
    phone.get_by_role("button", name="Search").click()
    assert "No offers match" in phone.get_by_test_id("no-results").inner_text()
    assert overflow(phone) <= 390
    phone.get_by_test_id("drop-min_free_cards").click()
    assert phone.locator('[data-testid="offers"] tbody tr').count() == 1


def test_the_search_page_fits_a_390_px_screen_for_a_signed_in_buyer(phone, market):
    # the header carries the buyer's navigation, organization and e-mail address: it must wrap, not overflow
    phone.goto("/accounts/login/")
    phone.get_by_label("Email").fill(market.email)
    phone.get_by_label("Password").fill("correct-horse-battery-staple")
    phone.get_by_role("button", name="Sign in").click()
    phone.wait_for_selector('[data-testid="signed-in-as"]')
    phone.goto("/market/?model=nvidia-h100-sxm5-80gb")
    assert phone.locator('[data-testid="offers"] tbody tr').count() == 1
    assert overflow(phone) <= 390
