"""The browser smoke test: the landing page shows the network, and a user signs in."""

import pytest

from tests.factories import DEFAULT_PASSWORD, NodeFactory, OfferFactory, accelerator, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_landing_page_shows_live_network_totals_and_a_user_signs_in(page):
    # Given a small network: 2 nodes of different vendors, one listed
    h100 = NodeFactory(card_count=8)
    OfferFactory(cluster=h100.cluster, accelerator_model=h100.accelerator_model)
    NodeFactory(card_count=4, accelerator_model=accelerator("huawei-ascend-910b3"))
    user = member(kind="buyer")

    # When a visitor opens the landing page
    page.goto("/")
    # Then the totals are the network's
    assert page.get_by_test_id("total-cards").inner_text() == "12"
    assert page.get_by_test_id("total-sites").inner_text() == "2"
    vendors = page.get_by_test_id("cards-by-vendor").inner_text()
    assert "NVIDIA" in vendors and "Huawei" in vendors

    # When they sign in
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # Then they are signed in, acting for their organization, with the buyer navigation
    assert page.get_by_test_id("signed-in-as").inner_text() == user.email
    assert page.get_by_role("link", name="My reservations").is_visible()


def test_a_wrong_password_is_answered_on_the_page(page):
    user = member()
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert "correct email address and password" in page.locator(".form-errors").inner_text()
