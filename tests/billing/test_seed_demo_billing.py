"""The demo's billing history: real billing run over past usage, reviewed by the real services, once."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import Invoice, InvoiceLineEvidence, InvoiceStatusChange
from billing.services import ledger_reconcile
from inventory.management.demo_network import DEMO_LOGINS
from marketplace.models import Reservation

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_market():
    call_command("seed_demo", cards=600, no_progress=True, verbosity=0)
    call_command("seed_demo_market", verbosity=0)


def snapshot():
    return (sorted(Invoice.objects.values_list("pk", "status", "number", "total_minor")),
            Reservation.objects.count(), InvoiceLineEvidence.objects.count(), InvoiceStatusChange.objects.count())


def test_the_demo_gets_invoiced_months_some_approved_some_left_for_review_and_a_second_run_changes_nothing(demo_market):
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
    demo_buyer_invoices = invoices.filter(buyer__memberships__user__email=DEMO_LOGINS["buyer"])
    assert demo_buyer_invoices.exists() and not demo_buyer_invoices.exclude(status="open").exists()
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
