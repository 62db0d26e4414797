"""The payment-attempt and payout lists are read-only and scoped like invoices: a buyer's finance roles see
its attempts, a provider's its payouts, finance staff everything, others nothing; plus the payout command."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import Membership
from billing.models import BillingProfile
from billing.payments import invoice_pay
from tests.billing.conftest import card_saved, open_invoice
from tests.factories import OrganizationFactory, UserFactory, member, staff_group

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def money(stripe_settings, connect_fake, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4000000000000341")
    invoice_pay(invoice_id=invoice.pk)  # declined
    card_saved(organization=buyer_org, number="4242424242424242")
    invoice_pay(invoice_id=invoice.pk)  # paid
    provider = offer.cluster.site.owner
    BillingProfile.objects.create(organization=provider, stripe_connect_account_id=connect_fake.add_account("acct_api"))
    return {"buyer": buyer_org, "provider": provider, "invoice": invoice}


def test_the_buyer_reads_its_attempts_with_the_decline_reason(money):
    client = client_for(member(organization=money["buyer"], role=Membership.Role.FINANCE_VIEWER))
    rows = client.get("/api/payment-attempts/", {"invoice": money["invoice"].pk}).json()["results"]
    assert [(r["attempt"], r["status"]) for r in rows] == [(2, "succeeded"), (1, "failed")]
    assert rows[1]["decline_code"] == "card_declined" and "declined" in rows[1]["failure_reason"]
    assert client.get(f"/api/invoices/{money['invoice'].pk}/").json()["payment_error"] == ""
    assert client.get("/api/payment-attempts/", {"invoice": 2**64}).status_code == 400


def test_the_provider_reads_its_payouts_and_nobody_else_does(money, capsys):
    call_command("billing_payout_run")
    assert "1 created" in capsys.readouterr().out
    provider = client_for(member(organization=money["provider"], role=Membership.Role.OWNER))
    [row] = provider.get("/api/payouts/").json()["results"]
    assert row["invoice"] == money["invoice"].pk and row["status"] == "paid" and row["stripe_transfer_id"].startswith("tr_")
    stranger = client_for(member(organization=OrganizationFactory(), role=Membership.Role.OWNER))
    assert stranger.get("/api/payouts/").json()["results"] == []
    assert stranger.get("/api/payment-attempts/").json()["results"] == []
    plain = client_for(member(organization=money["provider"], role=Membership.Role.MEMBER))
    assert plain.get("/api/payouts/").status_code == 403
    finance = UserFactory()
    finance.groups.add(staff_group("finance"))
    assert len(client_for(finance).get("/api/payouts/").json()["results"]) == 1
    assert len(client_for(finance).get("/api/payment-attempts/").json()["results"]) == 2
