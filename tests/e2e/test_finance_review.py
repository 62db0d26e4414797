"""In a real browser: finance signs in, opens a draft from the review queue, drills from a line into
its device-hours, approves it with a reason; the buyer then finds it among their invoices, saves a card
that is declined when charged and sees Stripe's reason on the invoice, then pays it with the test card
4242 4242 4242 4242 and the invoice shows paid (Stripe: localstripe over HTTP, its Stripe.js stand-in)."""

from datetime import timedelta

import pytest

from accounts.models import Membership, Organization
from billing.models import Invoice
from billing.services import billing_run
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.e2e.test_provider_inventory import sign_in
from tests.factories import (
    ClusterFactory,
    NodeFactory,
    OfferFactory,
    OrganizationFactory,
    UserFactory,
    catalog_loaded,
    member,
    staff_group,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def march_draft():
    catalog_loaded()
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    buyer = OrganizationFactory(name="Gamma Robotics", kind=Organization.Kind.BUYER)
    # 8 cards from 10:30 to 13:00: 3 hours of evidence per device, the first one half billed
    reservation = served(buyer=buyer, offer=offer, periods=[(MARCH + 2 * H + timedelta(minutes=30), MARCH + 5 * H)])
    billing_run(now=APRIL + H, organization_ids=[buyer.pk])
    return Invoice.objects.get(buyer=buyer), reservation


def fill_card(page, number: str) -> None:
    """Type a card into Stripe's element (localstripe's stand-in for Stripe.js) and save it."""
    element = page.get_by_test_id("card-element")
    for field, value in (("number", number), ("exp_month", "12"), ("exp_year", "31"), ("cvc", "123"), ("postal_code", "10001")):
        element.get_by_placeholder(field).fill(value)
    page.get_by_test_id("save-card").click()
    page.get_by_test_id("card-label").filter(has_text=number[-4:]).wait_for()


def test_finance_approves_a_draft_after_its_device_hours_and_the_buyer_pays_it(page, browser, live_server, march_draft, stripe_settings):
    invoice, reservation = march_draft
    line = invoice.lines.get(kind="charge")
    finance = UserFactory(email="finance-e2e@example.test")
    finance.groups.add(staff_group("finance"))

    # Given finance staff signed in, the review queue lists the draft
    sign_in(page, finance)
    page.get_by_role("link", name="Finance").click()
    queue = page.get_by_test_id("review-queue")
    assert "Gamma Robotics" in queue.inner_text()

    # When they open it and drill from its line into the evidence
    queue.get_by_role("link", name=invoice.display_number).click()
    assert page.get_by_test_id("invoice-status").inner_text() == "Draft"
    page.get_by_test_id("evidence-link").click()
    rows = page.locator('[data-testid="evidence"] tbody tr')
    # Then they see each device-hour: 8 devices x 3 hours, 1800 + 3600 + 3600 billable seconds each
    assert rows.count() == 24 == line.evidence.count()
    assert page.get_by_test_id("evidence-seconds-total").inner_text() == str(8 * 9000) == str(line.card_seconds)
    first_device = reservation.segments.get().device_ids[0]
    device_seconds = [int(row.locator("td").nth(2).inner_text()) for row in rows.all()
                      if row.get_attribute("data-device") == str(first_device)]
    assert device_seconds == [1800, 3600, 3600]

    # When they go back and approve without a reason, the browser keeps the form (required field)
    page.get_by_role("link", name="Back to the invoice").click()
    page.get_by_role("button", name="Approve").click()
    assert Invoice.objects.get(pk=invoice.pk).status == "draft"
    # and with one, the invoice is approved and numbered, and the audit trail says who and why
    page.get_by_label("Reason for approving").fill("Evidence matches the service segments.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("text=Invoice approved as CNY-")
    invoice.refresh_from_db()
    assert invoice.status == "approved" and invoice.number is not None
    assert page.get_by_test_id("invoice-status").inner_text() == "Approved"
    trail = page.get_by_test_id("audit-trail").inner_text()
    assert "finance-e2e@example.test" in trail and "Evidence matches the service segments." in trail

    # And the buyer's owner now finds it among their invoices
    buyer_context = browser.new_context(base_url=live_server.url)
    buyer_page = buyer_context.new_page()
    sign_in(buyer_page, member(organization=invoice.buyer, role=Membership.Role.OWNER))
    buyer_page.get_by_role("link", name="Invoices").click()
    buyer_page.get_by_role("link", name=invoice.display_number).click()
    assert buyer_page.get_by_test_id("invoice-total").inner_text() == page.get_by_test_id("invoice-total").inner_text()
    invoice_url = buyer_page.url

    # With no card saved, the invoice page sends them to the payment method page; they save a card that
    # Stripe declines when it is charged (4000 0000 0000 0341)
    buyer_page.get_by_test_id("payment-method-link").click()
    fill_card(buyer_page, "4000000000000341")
    # Then "Pay now" on the invoice shows Stripe's reason there, and the invoice stays unpaid
    buyer_page.goto(invoice_url)
    buyer_page.get_by_test_id("pay-now").click()
    buyer_page.get_by_test_id("payment-error").wait_for()
    assert "declined" in buyer_page.get_by_test_id("payment-error").inner_text()
    assert buyer_page.url == invoice_url
    assert Invoice.objects.get(pk=invoice.pk).status == "open"

    # When they save the test card 4242 4242 4242 4242 instead and pay again
    buyer_page.get_by_role("link", name="Use another card").click()
    fill_card(buyer_page, "4242424242424242")
    buyer_page.goto(invoice_url)
    buyer_page.get_by_test_id("pay-now").click()
    # Then the invoice shows paid, the decline is gone and nothing is left to pay
    buyer_page.get_by_text(f"Invoice {invoice.display_number} is paid.").wait_for()
    assert buyer_page.get_by_test_id("payment-status").inner_text().startswith("Paid")
    assert buyer_page.get_by_test_id("pay-now").count() == 0 and buyer_page.get_by_test_id("payment-error").count() == 0
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert list(invoice.payment_attempts.order_by("attempt").values_list("status", flat=True)) == ["failed", "succeeded"]
    buyer_context.close()
