"""Provider payouts: the provider's share of paid invoices (the payable approval posted) goes out as a
Stripe Connect transfer - tested against tests/billing/stripe_connect_fake.py over HTTP (localstripe has
no Connect); the invoice is collected through localstripe."""

import pytest
from django.db.models import Sum

from accounts.models import Notification, NotificationKind
from billing.models import BillingProfile, Invoice, JournalPosting, Payout
from billing.payments import invoice_pay, payout_refresh, payout_run, payouts_due
from billing.services import ledger_reconcile, platform_fee_minor
from tests.billing.conftest import card_saved, open_invoice
from tests.factories import member

pytestmark = pytest.mark.django_db


def payable(provider, invoice=None):
    qs = JournalPosting.objects.filter(account="provider_payables", organization=provider)
    if invoice is not None:
        qs = qs.filter(entry__invoice=invoice)
    return qs.aggregate(total=Sum("amount_minor"))["total"] or 0


@pytest.fixture
def paid_invoice(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    invoice_pay(invoice_id=invoice.pk)
    return Invoice.objects.get(pk=invoice.pk)


def connect(provider, account_id, connect_fake):
    BillingProfile.objects.update_or_create(organization=provider, defaults={"stripe_connect_account_id": connect_fake.add_account(account_id)})


def test_an_unpaid_invoice_pays_nobody_out(stripe_settings, buyer_org, offer, connect_fake):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    connect(offer.cluster.site.owner, "acct_provider1", connect_fake)
    assert payouts_due() == []
    assert payout_run() == {"created": 0, "sent": 0, "settled": 0}
    assert not connect_fake.calls and invoice.payouts.count() == 0


def test_the_share_of_a_paid_invoice_is_transferred_once_then_settles_paid(paid_invoice, offer, connect_fake):
    provider = offer.cluster.site.owner
    owner = member(organization=provider)
    connect(provider, "acct_provider1", connect_fake)
    line = paid_invoice.lines.get(kind="charge")
    share = line.amount_minor - platform_fee_minor(line.amount_minor)
    assert payable(provider) == -share  # approval credited the share: the one truth payouts read

    first = payout_run()
    second = payout_run()

    payout = Payout.objects.get()
    assert first["created"] == 1 and second["created"] == 0
    assert (payout.amount_minor, payout.currency, payout.destination) == (share, "CNY", "acct_provider1")
    assert payout.idempotency_key == f"payout-invoice-{paid_invoice.pk}-provider-{provider.pk}-1"
    transfer = connect_fake.transfers[payout.stripe_transfer_id]
    assert transfer["transfer_group"] == f"invoice-{paid_invoice.pk}" and transfer["amount"] == share
    assert len(connect_fake.transfers) == 1
    # the first run put it in transit; the second re-read the transfer (landed: destination_payment) -> paid
    assert payout.status == Payout.Status.PAID
    assert list(payout.status_changes.values_list("to_status", flat=True)) == ["pending", "in_transit", "paid"]
    assert payable(provider) == 0
    # the provider's owner is told once that the payout left
    assert Notification.objects.filter(user=owner, kind=NotificationKind.PAYOUT_SENT).count() == 1
    assert ledger_reconcile() == []


def test_a_provider_without_a_connected_account_waits(paid_invoice, offer, connect_fake):
    assert payout_run()["created"] == 0
    assert len(payouts_due()) == 1 and not Payout.objects.exists()
    connect(offer.cluster.site.owner, "acct_late", connect_fake)
    assert payout_run()["created"] == 1


def test_stripe_down_leaves_the_payout_pending_and_the_retry_uses_the_same_key(paid_invoice, offer, connect_fake):
    connect(offer.cluster.site.owner, "acct_provider1", connect_fake)
    connect_fake.fail_next_with_500 = 1
    payout_run()
    payout = Payout.objects.get()
    assert payout.status == Payout.Status.PENDING and payout.stripe_transfer_id == ""
    assert payable(offer.cluster.site.owner) < 0  # nothing booked while the outcome is unknown

    payout_run()

    payout.refresh_from_db()
    keys = [key for method, path, key in connect_fake.calls if method == "POST"]
    assert keys == [payout.idempotency_key, payout.idempotency_key]
    assert payout.status == Payout.Status.PAID and len(connect_fake.transfers) == 1  # sent, then settled in the same run
    assert ledger_reconcile() == []


def test_a_refused_destination_fails_the_payout_and_the_next_attempt_pays(paid_invoice, offer, connect_fake):
    provider = offer.cluster.site.owner
    BillingProfile.objects.create(organization=provider, stripe_connect_account_id="acct_closed")
    payout_run()
    failed = Payout.objects.get()
    assert failed.status == Payout.Status.FAILED and "No such destination" in failed.failure_reason
    assert ledger_reconcile() == []
    connect(provider, "acct_provider1", connect_fake)

    payout_run()

    retry = Payout.objects.exclude(pk=failed.pk).get()
    assert retry.attempt == 2 and retry.idempotency_key.endswith("-2") and retry.status == Payout.Status.PAID
    assert payable(provider) == 0


def test_a_reversed_transfer_fails_the_payout_and_reopens_the_payable(paid_invoice, offer, connect_fake):
    provider = offer.cluster.site.owner
    connect(provider, "acct_provider1", connect_fake)
    payout_run()
    payout = Payout.objects.get()
    assert payable(provider) == 0
    connect_fake.reverse(payout.stripe_transfer_id)

    payout = payout_refresh(payout_id=payout.pk)

    assert payout.status == Payout.Status.FAILED
    assert payable(provider, paid_invoice) < 0  # owed again; the next run pays it
    assert ledger_reconcile() == []
    assert len(payouts_due()) == 1


def test_a_transfer_reversed_webhook_re_reads_the_transfer_and_fails_the_payout_once(paid_invoice, offer, connect_fake):
    from billing.models import JournalEntry, StripeEvent
    from billing.payments import stripe_event_process

    connect(offer.cluster.site.owner, "acct_provider1", connect_fake)
    payout_run()
    payout = Payout.objects.get()
    connect_fake.reverse(payout.stripe_transfer_id)
    # the event's payload is not trusted (it claims nothing here): the transfer is re-read from Connect
    events = [StripeEvent.objects.create(event_id=f"evt_rev_{n}", type="transfer.reversed", object_id=payout.stripe_transfer_id,
                                         payload={"data": {"object": {"id": payout.stripe_transfer_id}}}) for n in range(3)]

    for event in events:
        assert stripe_event_process(event_pk=event.pk).status == StripeEvent.Status.PROCESSED

    payout.refresh_from_db()
    assert payout.status == Payout.Status.FAILED
    assert JournalEntry.objects.filter(kind="payout_failed").count() == 1
    assert ledger_reconcile() == []
