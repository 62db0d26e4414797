"""In a real browser, against localstripe over HTTP: a buyer saves a card through Stripe.js (localstripe's
stand-in for js.stripe.com) on the payment page and pays an open invoice; a card declined when charged
leaves the invoice open with Stripe's reason on the page; a card declined when saved shows the reason
and saves nothing."""

import pytest

from accounts.models import Membership
from billing.models import BillingProfile, Invoice
from tests.billing.conftest import open_invoice
from tests.e2e.test_market import sign_in
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, catalog_loaded, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def buyer_with_open_invoice(stripe_settings):
    catalog_loaded()
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    buyer = OrganizationFactory(kind="buyer")
    user = member(organization=buyer, role=Membership.Role.OWNER)
    return user, buyer, open_invoice(buyer=buyer, offer=offer)


def save_card(page, number):
    page.goto("/market/billing/payment/")
    element = page.get_by_test_id("card-element")
    element.get_by_placeholder("number").fill(number)
    element.get_by_placeholder("exp_month").fill("12")
    element.get_by_placeholder("exp_year").fill("31")
    element.get_by_placeholder("cvc").fill("123")
    element.get_by_placeholder("postal_code").fill("10001")
    page.get_by_test_id("save-card").click()


def test_a_buyer_saves_a_4242_card_and_pays_the_open_invoice(page, buyer_with_open_invoice):
    user, buyer, invoice = buyer_with_open_invoice
    sign_in(page, user)
    save_card(page, "4242424242424242")
    page.get_by_test_id("card-label").wait_for()
    assert "4242" in page.get_by_test_id("card-label").inner_text()

    page.locator(f'tr[data-invoice="{invoice.pk}"]').get_by_test_id("pay-now").click()

    page.get_by_text(f"Invoice {invoice.display_number} is paid.").wait_for()
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert page.locator(f'tr[data-invoice="{invoice.pk}"]').count() == 0  # nothing left to pay


def test_a_card_declined_when_charged_shows_the_reason_and_the_invoice_stays_open(page, buyer_with_open_invoice):
    user, buyer, invoice = buyer_with_open_invoice
    sign_in(page, user)
    save_card(page, "4000000000000341")  # saves fine; every charge declined
    page.get_by_test_id("card-label").wait_for()

    page.locator(f'tr[data-invoice="{invoice.pk}"]').get_by_test_id("pay-now").click()

    page.get_by_text(f"Invoice {invoice.display_number} was not paid").wait_for()
    row = page.locator(f'tr[data-invoice="{invoice.pk}"]')
    assert "declined" in row.get_by_test_id("payment-error").inner_text()
    assert Invoice.objects.get(pk=invoice.pk).status == "open"


def test_a_card_declined_when_saved_shows_the_reason_and_saves_nothing(page, buyer_with_open_invoice):
    user, buyer, _ = buyer_with_open_invoice
    sign_in(page, user)
    save_card(page, "4000000000000002")
    page.get_by_test_id("card-error").filter(has_text="declined").wait_for()
    assert not BillingProfile.objects.filter(organization=buyer).exclude(payment_method_id="").exists()


def test_the_payment_page_is_not_found_for_a_member_without_finance_rights(client, stripe_settings):
    user = member(organization=OrganizationFactory(kind="buyer"), role=Membership.Role.MEMBER)
    client.force_login(user)
    assert client.get("/market/billing/payment/").status_code == 404
    assert client.post("/market/billing/payment/invoices/1/pay/").status_code == 404
