"""In a real browser: finance signs in, opens a draft from the review queue, drills from a line into
its device-hours, approves it with a reason; the buyer then finds it among their invoices."""

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


def test_finance_reviews_a_draft_down_to_its_device_hours_and_approves_it(page, browser, live_server, march_draft):
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
    buyer_context.close()
