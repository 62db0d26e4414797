"""Collecting invoices through Stripe (localstripe over HTTP): the customer, the saved card, paid and
declined PaymentIntents, refunds for credit notes; the ledger moves with each."""

from datetime import timedelta

import pytest
from django.db.models import F, Sum

from accounts.models import Notification, NotificationKind
from billing.models import BillingProfile, Invoice, JournalEntry, JournalPosting, PaymentAttempt, Refund
from billing.payments import (
    PaymentMethodRefused,
    PaymentRefused,
    invoice_pay,
    refund_for_credit_note,
    stripe_customer_ensure,
)
from billing.services import credit_note_create, ledger_reconcile
from tests.billing.conftest import card_saved, open_invoice
from tests.factories import member

pytestmark = pytest.mark.django_db


def balance(account, organization=None, currency="CNY"):
    qs = JournalPosting.objects.filter(account=account, currency=currency)
    if organization is not None:
        qs = qs.filter(organization=organization)
    return qs.aggregate(total=Sum("amount_minor"))["total"] or 0


def test_the_stripe_customer_is_made_once_and_kept(stripe_settings, buyer_org):
    first = stripe_customer_ensure(organization=buyer_org)
    again = stripe_customer_ensure(organization=buyer_org)
    assert first.startswith("cus_") and again == first
    assert BillingProfile.objects.get(organization=buyer_org).stripe_customer_id == first


def test_a_saved_4242_card_pays_the_open_invoice_and_the_ledger_moves_it_to_stripe_clearing(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    profile = card_saved(organization=buyer_org, number="4242424242424242")
    assert profile.payment_method_id.startswith("pm_") and profile.payment_method_label.endswith("4242")
    receivable_before = balance("buyer_receivables", buyer_org)
    assert receivable_before == invoice.total_minor > 0

    attempt = invoice_pay(invoice_id=invoice.pk)

    assert attempt.status == PaymentAttempt.Status.SUCCEEDED
    assert attempt.idempotency_key == f"invoice-{invoice.pk}-attempt-1"
    assert attempt.stripe_payment_intent_id.startswith("pi_")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.payment_error == ""
    assert balance("buyer_receivables", buyer_org) == 0
    assert balance("stripe_clearing") == invoice.total_minor
    assert ledger_reconcile() == []
    # paying again is refused: the invoice is no longer open
    with pytest.raises(PaymentRefused):
        invoice_pay(invoice_id=invoice.pk)


def test_a_declined_card_leaves_the_invoice_open_with_the_reason(stripe_settings, buyer_org, offer, client):
    owner = member(organization=buyer_org)
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    # 4000000000000341: saves fine, every charge declined (Stripe's and localstripe's test card)
    card_saved(organization=buyer_org, number="4000000000000341")

    attempt = invoice_pay(invoice_id=invoice.pk)

    assert attempt.status == PaymentAttempt.Status.FAILED
    assert attempt.decline_code == "card_declined" and "declined" in attempt.failure_reason
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.payment_error == attempt.failure_reason
    # the buyer's owner is told once, with the reason
    told = Notification.objects.filter(user=owner, kind=NotificationKind.PAYMENT_FAILED)
    # our sentence for the decline code (in the reader's language), not Stripe's words
    assert told.count() == 1 and told.get().body.startswith("Your card was declined. Check the payment method")
    assert balance("buyer_receivables", buyer_org) == invoice.total_minor  # still owed
    assert not JournalEntry.objects.filter(kind="payment").exists()
    assert ledger_reconcile() == []

    # a good card then pays it, as attempt 2 with its own key, and the error is cleared
    card_saved(organization=buyer_org, number="4242424242424242")
    second = invoice_pay(invoice_id=invoice.pk)
    assert (second.attempt, second.status) == (2, PaymentAttempt.Status.SUCCEEDED)
    assert second.idempotency_key == f"invoice-{invoice.pk}-attempt-2"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID and invoice.payment_error == ""


def test_the_4000000000000002_card_is_declined_when_saved(stripe_settings, buyer_org):
    # localstripe (like Stripe) declines this card when it is attached: the SetupIntent confirm answers 402
    import requests

    with pytest.raises(requests.HTTPError):
        card_saved(organization=buyer_org, number="4000000000000002")
    assert BillingProfile.objects.get(organization=buyer_org).payment_method_id == ""


def test_a_setup_intent_of_another_customer_is_refused(stripe_settings, buyer_org):
    from billing.payments import payment_method_save, payment_method_setup_start
    from tests.factories import OrganizationFactory

    other = OrganizationFactory()
    theirs = payment_method_setup_start(organization=other)
    with pytest.raises(PaymentMethodRefused):
        payment_method_save(organization=buyer_org, setup_intent_id=theirs["setup_intent_id"])


def test_paying_without_a_saved_card_is_refused(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    with pytest.raises(PaymentRefused):
        invoice_pay(invoice_id=invoice.pk)
    assert not PaymentAttempt.objects.exists()


def test_a_credit_note_on_a_paid_invoice_is_refunded_once_and_the_ledger_balances(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    invoice_pay(invoice_id=invoice.pk)
    note = credit_note_create(invoice=Invoice.objects.get(pk=invoice.pk), amount_minor=1234, reason="goodwill", actor=None)
    assert balance("buyer_receivables", buyer_org) == -1234  # the platform owes the buyer

    refund = refund_for_credit_note(credit_note_id=note.pk)
    again = refund_for_credit_note(credit_note_id=note.pk)

    assert refund.status == Refund.Status.SUCCEEDED and refund.stripe_refund_id.startswith("re_")
    assert again.pk == refund.pk and Refund.objects.count() == 1
    assert refund.idempotency_key == f"credit-note-{note.pk}-refund"
    assert JournalEntry.objects.filter(kind="refund").count() == 1
    assert balance("buyer_receivables", buyer_org) == 0
    assert balance("stripe_clearing") == invoice.total_minor - 1234
    assert ledger_reconcile() == []


def test_a_credit_note_on_an_unpaid_invoice_refunds_nothing_and_lowers_the_charge(stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    note = credit_note_create(invoice=invoice, amount_minor=1000, reason="downtime", actor=None)
    assert refund_for_credit_note(credit_note_id=note.pk) is None
    card_saved(organization=buyer_org, number="4242424242424242")
    attempt = invoice_pay(invoice_id=invoice.pk)
    assert attempt.amount_minor == invoice.total_minor - 1000
    assert balance("buyer_receivables", buyer_org) == 0
    assert ledger_reconcile() == []


def test_an_invoice_with_a_payment_in_progress_cannot_be_voided(stripe_settings, buyer_org, offer, monkeypatch):
    from billing.services import InvoiceStateError, invoice_set_status

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    import stripe

    def stripe_unreachable(**kwargs):
        raise stripe.APIConnectionError("timed out")

    monkeypatch.setattr("billing.stripe_gateway.payment_intent_create_off_session", stripe_unreachable)
    attempt = invoice_pay(invoice_id=invoice.pk)
    assert attempt.status == PaymentAttempt.Status.PENDING  # outcome unknown: kept, never a second attempt
    with pytest.raises(InvoiceStateError):
        invoice_set_status(invoice=invoice, status="void", reason="changed my mind")
    monkeypatch.undo()

    resumed = invoice_pay(invoice_id=invoice.pk)  # the same attempt, the same key

    assert resumed.pk == attempt.pk and resumed.status == PaymentAttempt.Status.SUCCEEDED
    assert PaymentAttempt.objects.count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID


def test_a_credit_note_is_refused_while_a_payment_is_in_progress_then_refunded_once_paid(stripe_settings, buyer_org, offer, monkeypatch):
    import stripe

    from billing.services import CreditNoteRefused

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")

    def stripe_unreachable(**kwargs):
        raise stripe.APIConnectionError("timed out")

    monkeypatch.setattr("billing.stripe_gateway.payment_intent_create_off_session", stripe_unreachable)
    attempt = invoice_pay(invoice_id=invoice.pk)
    assert attempt.status == PaymentAttempt.Status.PENDING  # Stripe may be charging the full total right now
    # a credit note now would be charged in full and never refunded: refused, nothing written
    with pytest.raises(CreditNoteRefused, match="payment of this invoice is in progress"):
        credit_note_create(invoice=invoice, amount_minor=10000, reason="goodwill", actor=None)
    assert not invoice.credit_notes.exists()
    monkeypatch.undo()
    assert invoice_pay(invoice_id=invoice.pk).status == PaymentAttempt.Status.SUCCEEDED  # the full total
    # once paid, the note is accepted and goes back to the card
    note = credit_note_create(invoice=invoice, amount_minor=10000, reason="goodwill", actor=None)
    refund_for_credit_note(credit_note_id=note.pk)
    assert Refund.objects.get(credit_note=note).amount_minor == 10000
    assert ledger_reconcile() == []


def test_a_resumed_payment_charges_the_card_it_was_recorded_with_not_the_one_saved_since(stripe_settings, buyer_org, offer, monkeypatch):
    import stripe

    from billing import stripe_gateway

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    first = card_saved(organization=buyer_org, number="4242424242424242").payment_method_id

    def stripe_unreachable(**kwargs):
        raise stripe.APIConnectionError("timed out")

    monkeypatch.setattr("billing.stripe_gateway.payment_intent_create_off_session", stripe_unreachable)
    attempt = invoice_pay(invoice_id=invoice.pk)
    assert (attempt.status, attempt.stripe_payment_method_id) == (PaymentAttempt.Status.PENDING, first)
    assert attempt.stripe_customer_id == BillingProfile.objects.get(organization=buyer_org).stripe_customer_id
    monkeypatch.undo()
    # the buyer saves another card meanwhile; the resume must repeat the same request under the same key
    assert card_saved(organization=buyer_org, number="5555555555554444").payment_method_id != first
    resumed = invoice_pay(invoice_id=invoice.pk)
    assert resumed.pk == attempt.pk and resumed.status == PaymentAttempt.Status.SUCCEEDED
    assert stripe_gateway.payment_intent_retrieve(payment_intent_id=resumed.stripe_payment_intent_id).payment_method == first


def test_an_idempotency_error_fails_the_attempt_instead_of_leaving_it_pending_forever(stripe_settings, buyer_org, offer, monkeypatch):
    import stripe

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")

    def key_reused(**kwargs):
        raise stripe.IdempotencyError("Keys for idempotent requests can only be used with the same parameters they were first used with.")

    monkeypatch.setattr("billing.stripe_gateway.payment_intent_create_off_session", key_reused)
    attempt = invoice_pay(invoice_id=invoice.pk)
    assert (attempt.status, attempt.decline_code) == (PaymentAttempt.Status.FAILED, "idempotency_error")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN and "please pay again" in invoice.payment_error
    monkeypatch.undo()
    # the buyer pays again: a new attempt with a new key, which Stripe answers
    again = invoice_pay(invoice_id=invoice.pk)
    assert (again.attempt, again.status) == (2, PaymentAttempt.Status.SUCCEEDED)


def test_the_sweep_makes_refunds_whose_task_was_lost_or_left_pending_and_never_refunds_a_note_the_charge_took_off(
        stripe_settings, buyer_org, offer, monkeypatch):
    import stripe

    from billing.models import CreditNote
    from billing.payments import refunds_sweep
    from tests.factories import OrganizationFactory

    def aged():  # the sweep leaves the on-commit task a minute first; everything 2 min older, in order
        for model in (CreditNote, Refund, PaymentAttempt):
            model.objects.update(created_at=F("created_at") - timedelta(minutes=2))

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4242424242424242")
    assert invoice_pay(invoice_id=invoice.pk).status == PaymentAttempt.Status.SUCCEEDED
    # a credit note on the paid invoice whose refund task was lost (no on-commit task runs in this test)
    lost = credit_note_create(invoice=invoice, amount_minor=1000, reason="task lost", actor=None)
    # another whose refund call got no answer: left pending
    monkeypatch.setattr("billing.stripe_gateway.refund_create", lambda **kwargs: (_ for _ in ()).throw(stripe.APIConnectionError("timed out")))
    unanswered = credit_note_create(invoice=invoice, amount_minor=2000, reason="no answer", actor=None)
    assert refund_for_credit_note(credit_note_id=unanswered.pk).status == Refund.Status.PENDING
    monkeypatch.undo()
    # a third buyer's note issued before its payment: the charge was lowered by it, nothing to refund
    other = OrganizationFactory()
    earlier_invoice = open_invoice(buyer=other, offer=offer)
    earlier = credit_note_create(invoice=earlier_invoice, amount_minor=500, reason="before payment", actor=None)
    card_saved(organization=other, number="4242424242424242")
    assert invoice_pay(invoice_id=earlier_invoice.pk).amount_minor == earlier_invoice.total_minor - 500
    aged()
    assert refunds_sweep() == 2
    assert {(r.credit_note_id, r.status, r.amount_minor) for r in Refund.objects.all()} == {
        (lost.pk, "succeeded", 1000), (unanswered.pk, "succeeded", 2000)}
    assert not Refund.objects.filter(credit_note=earlier).exists()
    assert refunds_sweep() == 0  # all settled: nothing tried again
    assert Refund.objects.count() == 2
    assert ledger_reconcile() == []


def test_an_attempt_failed_on_requires_action_records_a_later_success_once(stripe_settings, buyer_org, offer):
    import stripe

    from billing.payments import payment_attempt_apply_intent

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    attempt = PaymentAttempt.objects.create(invoice=invoice, attempt=1, idempotency_key=f"invoice-{invoice.pk}-attempt-1",
                                            amount_minor=invoice.total_minor, currency=invoice.currency)

    def intent(status):
        return stripe.PaymentIntent.construct_from({"id": "pi_late", "status": status}, "sk_test_x")

    # off-session, the bank asks for authentication: failed at once (nobody there to authenticate)
    assert payment_attempt_apply_intent(attempt_id=attempt.pk, intent=intent("requires_action")).status == "failed"
    # the buyer authenticates later; Stripe (the webhook's re-read) shows the intent succeeded
    late = payment_attempt_apply_intent(attempt_id=attempt.pk, intent=intent("succeeded"))
    assert (late.status, late.decline_code) == ("succeeded", "")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_error) == ("paid", "")
    payment_attempt_apply_intent(attempt_id=attempt.pk, intent=intent("succeeded"))  # a redelivery changes nothing
    assert JournalEntry.objects.filter(invoice=invoice, kind="payment").count() == 1
    assert balance("buyer_receivables", buyer_org) == 0
    assert ledger_reconcile() == []


def test_a_late_success_for_a_voided_invoice_is_not_recorded_as_its_payment(stripe_settings, buyer_org, offer):
    import stripe

    from billing.payments import payment_attempt_apply_intent
    from billing.services import invoice_void

    invoice = open_invoice(buyer=buyer_org, offer=offer)
    attempt = PaymentAttempt.objects.create(invoice=invoice, attempt=1, idempotency_key=f"invoice-{invoice.pk}-attempt-1",
                                            amount_minor=invoice.total_minor, currency=invoice.currency)
    payment_attempt_apply_intent(attempt_id=attempt.pk, intent=stripe.PaymentIntent.construct_from(
        {"id": "pi_void", "status": "requires_action"}, "sk_test_x"))
    invoice_void(invoice=invoice, actor=None, reason="billed in error")
    after = payment_attempt_apply_intent(attempt_id=attempt.pk, intent=stripe.PaymentIntent.construct_from(
        {"id": "pi_void", "status": "succeeded"}, "sk_test_x"))
    assert after.status == "failed" and Invoice.objects.get(pk=invoice.pk).status == "void"
    assert not JournalEntry.objects.filter(invoice=invoice, kind="payment").exists()
