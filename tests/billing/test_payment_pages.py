"""Payments on the pages (localstripe over HTTP): the buyer's invoice page shows the payment status, the
last decline reason and the attempts, and pays with "Pay now" when a card is saved; the payment method
link is in the navigation for those who may pay; finance sees every payout and its status; a provider's
earnings page shows accrued, in transit and paid from the ledger and its payouts."""

import re

import pytest

from accounts.models import Membership
from billing.models import BillingProfile, Invoice, PaymentAttempt, Payout
from billing.payments import invoice_pay, payout_create, payout_run, payout_send
from billing.services import billing_run, invoice_approve, ledger_reconcile, platform_fee_minor
from inventory.pricing import format_money
from tests.billing.conftest import APRIL, MARCH, H, card_saved, open_invoice, served
from tests.factories import OrganizationFactory, UserFactory, member, staff_group

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def slot(body: str) -> str:
    return body.split('data-testid="payment-slot"')[1].split("</section>")[0]


def header_links(body: str) -> list[str]:
    header = body.split('<header class="topbar">')[1].split("</header>")[0]
    return re.findall(r'<a [^>]*href="([^"]+)"', header)


def test_the_invoice_page_pays_with_the_saved_card_shows_a_decline_and_then_paid(client, stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    client.force_login(member(organization=buyer_org, role=Membership.Role.OWNER))
    page = f"/market/invoices/{invoice.pk}/"
    # no card yet: no button, a link to the payment method page
    body = slot(text(client.get(page)))
    assert 'data-testid="pay-now"' not in body and 'href="/market/billing/payment/"' in body
    assert f"{format_money(invoice.total_minor, invoice.currency)} to pay" in body

    # a card declined when charged: "Pay now" returns to the invoice, which shows Stripe's reason and the attempt
    card_saved(organization=buyer_org, number="4000000000000341")
    assert 'data-testid="pay-now"' in slot(text(client.get(page)))
    response = client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/", {"return_to": "invoice"})
    assert response.status_code == 302 and response["Location"] == page
    body = text(client.get(page))
    reason = PaymentAttempt.objects.get(invoice=invoice).failure_reason
    assert "declined" in reason
    # our words for Stripe's code (card_declined); Stripe's own message is the same words here, so not repeated
    assert f'data-testid="payment-error">Last payment declined: <span data-testid="decline-reason">{reason}</span>' in slot(body)
    assert 'data-testid="decline-detail"' not in slot(body)
    assert '<tr data-status="failed">' in slot(body) and f"was not paid: {reason}" in body  # the message after the redirect
    assert Invoice.objects.get(pk=invoice.pk).status == "open"

    # a good card pays it: Paid, no button, the decline reason gone, two attempts listed
    card_saved(organization=buyer_org, number="4242424242424242")
    client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/", {"return_to": "invoice"})
    body = slot(text(client.get(page)))
    assert 'data-testid="payment-status"><span class="badge ok">Paid' in body
    assert 'data-testid="pay-now"' not in body and 'data-testid="payment-error"' not in body
    assert body.count("<tr data-status=") == 2 and '<tr data-status="succeeded">' in body
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    # finance sees the same payment history on its invoice page, without a button
    finance = UserFactory()
    finance.groups.add(staff_group("finance"))
    client.force_login(finance)
    body = slot(text(client.get(f"/finance/invoices/{invoice.pk}/")))
    assert '<tr data-status="failed">' in body and '<tr data-status="succeeded">' in body and 'data-testid="pay-now"' not in body
    client.force_login(member(organization=buyer_org, role=Membership.Role.OWNER))
    # paying again is a 404 (nothing payable by that id), and nothing more is charged
    assert client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/").status_code == 404
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 2
    assert ledger_reconcile() == []


def test_an_approved_invoice_is_opened_by_its_payment(client, stripe_settings, buyer_org, offer):
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 4 * H)])
    billing_run(organization_ids=[buyer_org.pk], now=APRIL + H)
    invoice = invoice_approve(invoice=Invoice.objects.get(buyer=buyer_org), actor=None, reason="checked")
    card_saved(organization=buyer_org, number="4242424242424242")
    client.force_login(member(organization=buyer_org, role=Membership.Role.ADMIN))
    assert 'data-testid="pay-now"' in slot(text(client.get(f"/market/invoices/{invoice.pk}/")))

    client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/", {"return_to": "invoice"})

    invoice.refresh_from_db()
    assert invoice.status == "paid"
    trail = list(invoice.status_changes.order_by("pk").values_list("to_status", flat=True))
    assert trail[-2:] == ["open", "paid"]
    assert ledger_reconcile() == []


def test_who_may_pay_sees_the_button_and_the_payment_method_link_and_nobody_else(client, stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    page = f"/market/invoices/{invoice.pk}/"
    # owners and admins: the button and the navigation link
    for role in (Membership.Role.OWNER, Membership.Role.ADMIN):
        client.force_login(member(organization=buyer_org, role=role))
        body = text(client.get(page))
        assert 'data-testid="pay-now"' in slot(body) and "/market/billing/payment/" in header_links(body)
    # a finance viewer reads the invoice but cannot pay: no button, no link, and the POST is refused
    client.force_login(member(organization=buyer_org, role=Membership.Role.FINANCE_VIEWER))
    body = text(client.get(page))
    assert 'data-testid="pay-now"' not in slot(body) and "An owner or admin" in slot(body)
    assert "/market/billing/payment/" not in header_links(body)
    assert client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/").status_code == 404
    # another buyer's owner can neither see nor pay it
    client.force_login(member(organization=OrganizationFactory(kind="buyer"), role=Membership.Role.OWNER))
    assert client.get(page).status_code == 404
    assert client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/").status_code == 404
    assert not PaymentAttempt.objects.exists() and Invoice.objects.get(pk=invoice.pk).status == "open"


def test_the_payment_page_still_opens_when_stripe_does_not_answer(client, stripe_settings, buyer_org):
    from config.localservices import free_port

    stripe_settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port(0)}"
    client.force_login(member(organization=buyer_org, role=Membership.Role.OWNER))
    response = client.get("/market/billing/payment/")
    assert response.status_code == 200 and 'data-testid="stripe-unavailable"' in text(response)


@pytest.fixture
def paid_invoice(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    invoice_pay(invoice_id=invoice.pk)
    return Invoice.objects.get(pk=invoice.pk)


def summary_row(body: str, currency: str) -> str:
    return body.split('data-testid="earnings-summary"')[1].split(f'<tr data-currency="{currency}">')[1].split("</tr>")[0]


def test_finance_and_the_provider_follow_a_payout_from_accrued_to_in_transit_to_paid(client, paid_invoice, offer, connect_fake):
    provider = offer.cluster.site.owner
    line = paid_invoice.lines.get(kind="charge")
    share = line.amount_minor - platform_fee_minor(line.amount_minor)
    owner = member(organization=provider, role=Membership.Role.OWNER)
    finance = UserFactory()
    finance.groups.add(staff_group("finance"))
    zero = format_money(0, "CNY")

    # Before any payout: the share is accrued
    client.force_login(owner)
    row = summary_row(text(client.get("/provider/earnings/")), "CNY")
    assert f'data-testid="accrued">{format_money(share, "CNY")}<' in row and f'data-testid="paid">{zero}<' in row

    # The payout is recorded and its transfer made: in transit for the provider and for finance
    BillingProfile.objects.update_or_create(organization=provider, defaults={"stripe_connect_account_id": connect_fake.add_account("acct_p1")})
    # (the run's steps one by one: a whole run also re-reads the transfer, which the fake has landed at once)
    payout = payout_send(payout_id=payout_create(invoice_id=paid_invoice.pk, provider_id=provider.pk).pk)
    assert payout.status == Payout.Status.IN_TRANSIT
    body = text(client.get("/provider/earnings/"))
    row = summary_row(body, "CNY")
    assert f'data-testid="accrued">{zero}<' in row and f'data-testid="in-transit">{format_money(share, "CNY")}<' in row
    assert f'<tr data-payout="{payout.pk}" data-status="in_transit">' in body
    client.force_login(finance)
    body = text(client.get("/finance/payouts/"))
    assert f'<tr data-payout="{payout.pk}" data-status="in_transit">' in body and provider.name in body

    # When the payout run re-reads it, landed: paid everywhere
    assert payout_run()["settled"] == 1
    payout.refresh_from_db()
    assert payout.status == Payout.Status.PAID
    body = text(client.get("/finance/payouts/", {"status": "paid"}))
    assert f'<tr data-payout="{payout.pk}" data-status="paid">' in body
    assert f'data-status="paid">{format_money(share, "CNY")}<' in body.split('data-testid="payout-totals"')[1].split("</table>")[0]
    assert f'data-payout="{payout.pk}"' not in text(client.get("/finance/payouts/", {"status": "failed"}))
    client.force_login(owner)
    row = summary_row(text(client.get("/provider/earnings/")), "CNY")
    assert f'data-testid="paid">{format_money(share, "CNY")}<' in row and f'data-testid="in-transit">{zero}<' in row

    # another provider sees none of it; the buyer cannot open either page
    client.force_login(member(organization=OrganizationFactory(kind="provider"), role=Membership.Role.OWNER))
    assert f'data-payout="{payout.pk}"' not in text(client.get("/provider/earnings/"))
    client.force_login(member(organization=paid_invoice.buyer, role=Membership.Role.OWNER))
    assert client.get("/finance/payouts/").status_code == 403
