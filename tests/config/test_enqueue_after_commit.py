"""Enqueueing after commit with the broker down: the committed action stands and nothing raises (no
500 for a done action); the sweeps drive the work later."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F

from billing.models import CreditNote, Invoice, PaymentAttempt, Refund
from billing.services import billing_run, credit_note_create, invoice_approve
from config.tasks import enqueue_after_commit
from tests.billing.conftest import APRIL, MARCH, H, card_saved, open_invoice, served
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, catalog_loaded, member

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_an_enqueue_with_the_broker_down_is_logged_after_the_commit_not_raised(private_broker, caplog):
    from accounts.tasks import notification_emails_send_task

    private_broker.stop()
    with transaction.atomic():
        enqueue_after_commit(notification_emails_send_task, dedupe_key="broker-down")
    assert "could not enqueue accounts.notification_emails_send" in caplog.text


def test_finance_approval_with_the_broker_down_commits_and_does_not_raise(private_broker):
    catalog_loaded()
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    owner = member(kind="buyer")  # the owner is emailed invoice_issued (on by default): an enqueue on commit
    buyer = owner.memberships.get().organization
    served(buyer=buyer, offer=offer, periods=[(MARCH + H, MARCH + 11 * H)])
    billing_run(organization_ids=[buyer.pk], now=APRIL + H)
    draft = Invoice.objects.get(buyer=buyer)
    private_broker.stop()
    invoice_approve(invoice=draft, actor=None, reason="ok")  # raised after the commit before
    assert Invoice.objects.get(pk=draft.pk).status == "approved"


def test_a_credit_note_on_a_paid_invoice_with_the_broker_down_stands_and_the_sweep_refunds_it(private_broker, stripe_settings):
    from billing.payments import invoice_pay, refunds_sweep

    catalog_loaded()
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    buyer = member(kind="buyer").memberships.get().organization
    invoice = open_invoice(buyer=buyer, offer=offer)
    card_saved(organization=buyer, number="4242424242424242")
    assert invoice_pay(invoice_id=invoice.pk).status == "succeeded"
    private_broker.stop()
    note = credit_note_create(invoice=invoice, amount_minor=1000, reason="goodwill", actor=None)  # the refund task is lost
    assert CreditNote.objects.filter(pk=note.pk).exists() and not Refund.objects.exists()
    for model in (CreditNote, PaymentAttempt):  # a sweep later (it leaves the task a minute first)
        model.objects.update(created_at=F("created_at") - timedelta(minutes=2))
    assert refunds_sweep() == 1
    assert Refund.objects.get(credit_note=note).status == "succeeded"
