"""The demo's billing history: real billing run over past usage, reviewed by the real services, and paid
(some) or declined (one) through the real payment services against localstripe over HTTP, once."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import (
    BillingProfile,
    Invoice,
    InvoiceLineEvidence,
    InvoiceStatusChange,
    JournalEntry,
    PaymentAttempt,
)
from billing.services import ledger_reconcile
from inventory.management.demo_network import DEMO_LOGINS
from marketplace.models import Reservation

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_market():
    call_command("seed_demo", cards=600, no_progress=True, verbosity=0)
    call_command("seed_demo_market", verbosity=0)


def snapshot():
    return (sorted(Invoice.objects.values_list("pk", "status", "number", "total_minor", "payment_error")),
            Reservation.objects.count(), InvoiceLineEvidence.objects.count(), InvoiceStatusChange.objects.count(),
            sorted(PaymentAttempt.objects.values_list("pk", "status", "stripe_payment_intent_id")), JournalEntry.objects.count())


def test_the_demo_gets_invoiced_months_some_paid_one_declined_some_left_for_review_and_a_second_run_changes_nothing(
        demo_market, stripe_settings):
    # When the demo billing history is seeded
    call_command("seed_demo_billing", verbosity=0)
    # Then at least one month is invoiced for every demo buyer, through the billing run (drafts got
    # numbers only by approval), some are open and some still drafts for finance, and the ledger reconciles
    invoices = Invoice.objects.all()
    assert invoices.values("period_start").distinct().count() >= 1
    assert invoices.values("buyer").distinct().count() == 4
    assert invoices.filter(status="open").exists() and invoices.filter(status="draft").exists()
    assert not invoices.filter(status="draft", number__isnull=False).exists()
    assert InvoiceStatusChange.objects.filter(to_status="approved", actor__email=DEMO_LOGINS["finance"]).exists()
    # some invoices are paid through localstripe (a PaymentIntent each, posted to the ledger), and exactly
    # one is declined: the demo buyer login's newest, left open with Stripe's reason for the invoice page
    paid = invoices.filter(status="paid")
    assert paid.count() >= 4  # every demo buyer paid at least its oldest month
    assert paid.values("buyer").distinct().count() == 4
    succeeded = PaymentAttempt.objects.filter(status="succeeded")
    assert succeeded.count() == paid.count() and not succeeded.filter(stripe_payment_intent_id="").exists()
    assert JournalEntry.objects.filter(kind="payment").count() == paid.count()
    declined = PaymentAttempt.objects.get(status="failed")
    assert declined.invoice.buyer.memberships.filter(user__email=DEMO_LOGINS["buyer"]).exists()
    assert declined.invoice.status == "open" and "declined" in declined.invoice.payment_error
    assert not PaymentAttempt.objects.filter(status="pending").exists()
    demo_buyer_invoices = invoices.filter(buyer__memberships__user__email=DEMO_LOGINS["buyer"])
    assert list(demo_buyer_invoices.order_by("period_start", "currency", "pk").values_list("status", flat=True)) == (
        ["paid"] * (demo_buyer_invoices.count() - 1) + ["open"])
    assert demo_buyer_invoices.count() >= 2
    assert "0341" in BillingProfile.objects.get(organization=declined.invoice.buyer).payment_method_label
    # still open (not paid): invoices other buyers left for later
    assert invoices.filter(status="open").exclude(pk=declined.invoice_id).exists()
    # every charge line has its device-hours, with samples from the rollup
    assert InvoiceLineEvidence.objects.filter(samples__gt=0).exists()
    assert ledger_reconcile() == []
    before = snapshot()
    # And a second run with --if-empty changes nothing; without it, it refuses
    call_command("seed_demo_billing", if_empty=True, verbosity=0)
    assert snapshot() == before
    with pytest.raises(CommandError):
        call_command("seed_demo_billing", verbosity=0)
    assert snapshot() == before


def test_payments_skipped_while_stripe_is_down_are_made_by_the_next_run(demo_market, stripe_settings, localstripe_url):
    from config.localservices import free_port

    # Given Stripe not answering when the demo is seeded
    stripe_settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port(0)}"
    err = StringIO()
    call_command("seed_demo_billing", if_empty=True, verbosity=0, stderr=err)
    # then the invoices are there and open, no payment is recorded, and the command said why
    assert Invoice.objects.filter(status="open").exists() and not Invoice.objects.filter(status="paid").exists()
    assert not PaymentAttempt.objects.exists()
    assert "Demo payments not made" in err.getvalue()
    # When Stripe is back, the next run (as the next `make run`) makes them, and only once
    stripe_settings.STRIPE_API_BASE = localstripe_url
    call_command("seed_demo_billing", if_empty=True, verbosity=0)
    assert Invoice.objects.filter(status="paid").exists() and PaymentAttempt.objects.filter(status="failed").count() == 1
    before = snapshot()
    call_command("seed_demo_billing", if_empty=True, verbosity=0)
    assert snapshot() == before


def test_the_demo_never_pays_through_real_stripe(demo_market, stripe_settings):
    stripe_settings.STRIPE_API_BASE = "https://api.stripe.com"
    err = StringIO()
    call_command("seed_demo_billing", if_empty=True, verbosity=0, stderr=err)
    assert not PaymentAttempt.objects.exists() and "real Stripe" in err.getvalue()
