"""Writes of billing that move money through Stripe: the buyer's Stripe customer and saved card,
collecting open invoices (PaymentIntents), refunds for credit notes on paid invoices, provider payouts
(Connect transfers) and the webhook inbox. See billing/__init__.py ("Payments") for the rules.

The pattern everywhere: (1) under row locks, record what we are about to ask Stripe, with a
deterministic idempotency key derived from our own row, and commit; (2) call Stripe outside any
transaction; (3) apply Stripe's answer under row locks, idempotently (a final state never changes,
the ledger is posted exactly once, on the move into the state). A crash between (1) and (3) leaves a
pending row that the next call, sweep or webhook resumes with the same key. Webhooks never trust the
event's payload: the object is re-read from Stripe, so duplicated and out-of-order deliveries converge
on Stripe's current state.
"""

import logging
from datetime import timedelta

import stripe
from django.db import transaction
from django.db.models import F, Max, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Organization
from billing import stripe_gateway as gateway
from billing.models import (
    BillingProfile,
    CreditNote,
    Invoice,
    JournalEntry,
    JournalPosting,
    LedgerAccount,
    PaymentAttempt,
    Payout,
    PayoutStatusChange,
    Refund,
    StripeEvent,
)
from billing.notifications import payment_failed_notify, payout_sent_notify
from billing.services import _journal_post, invoice_set_status
from config.tasks import enqueue_after_commit

logger = logging.getLogger(__name__)


class PaymentRefused(Exception):
    """A payment that cannot be attempted: the invoice is not open, or no card is saved."""


class PaymentMethodRefused(Exception):
    """The card could not be saved (the setup did not succeed, or is not this organization's)."""


class PayoutStateError(Exception):
    """A payout move its state machine does not allow."""


def _field(obj, key: str, default=None):
    """A field of a Stripe object (not a dict in stripe-python 16), or `default` when absent or null."""
    if obj is None or key not in obj:
        return default
    value = obj[key]
    return default if value is None else value


# --- customer and saved card ---------------------------------------------------------------------------------------


def billing_profile_get(*, organization_id: int) -> BillingProfile:
    profile, _ = BillingProfile.objects.get_or_create(organization_id=organization_id)
    return profile


def stripe_customer_ensure(*, organization: Organization) -> str:
    """The organization's Stripe customer id, created on first use. The idempotency key is derived from
    the organization, so two racing first uses create one customer at Stripe; the row lock keeps one id."""
    profile = billing_profile_get(organization_id=organization.pk)
    if profile.stripe_customer_id:
        return profile.stripe_customer_id
    customer = gateway.customer_create(organization_id=organization.pk, name=organization.name,
                                       idempotency_key=f"customer-organization-{organization.pk}")
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(pk=profile.pk)
        if not profile.stripe_customer_id:
            profile.stripe_customer_id = customer.id
            profile.save(update_fields=["stripe_customer_id", "updated_at"])
    return profile.stripe_customer_id


def payment_method_setup_start(*, organization: Organization) -> dict[str, str]:
    """A SetupIntent for the page: Stripe.js confirms it with the card typed into Stripe's element (the
    card number never reaches our server), then the page posts the SetupIntent id to payment_method_save."""
    customer_id = stripe_customer_ensure(organization=organization)
    intent = gateway.setup_intent_create(customer_id=customer_id)
    return {"setup_intent_id": intent.id, "client_secret": intent.client_secret}


def payment_method_save(*, organization: Organization, setup_intent_id: str) -> BillingProfile:
    """Keep the card of a succeeded SetupIntent of this organization's customer as the one charged for
    its invoices. Everything is re-read from Stripe: the page's word is not trusted."""
    customer_id = stripe_customer_ensure(organization=organization)
    try:
        intent = gateway.setup_intent_retrieve(setup_intent_id=setup_intent_id)
    except stripe.InvalidRequestError as exc:
        raise PaymentMethodRefused(_("That card setup does not exist.")) from exc
    if intent.customer != customer_id:
        raise PaymentMethodRefused(_("That card setup is not your organization's."))
    if intent.status != "succeeded" or not intent.payment_method:
        # Translators: status is Stripe's SetupIntent status code, e.g. requires_payment_method.
        raise PaymentMethodRefused(_("The card was not saved (its setup is %(status)s).") % {"status": intent.status})
    method = gateway.payment_method_retrieve(payment_method_id=intent.payment_method)
    if method.customer != customer_id:
        # Real Stripe attaches on SetupIntent confirmation; localstripe does not, so attach if needed.
        method = gateway.payment_method_attach(payment_method_id=method.id, customer_id=customer_id)
    card = method.card
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().get(organization=organization)
        profile.payment_method_id = method.id
        profile.payment_method_label = f"{card.brand} ending {card.last4}" if card else method.type
        profile.save(update_fields=["payment_method_id", "payment_method_label", "updated_at"])
    return profile


# --- collecting invoices -------------------------------------------------------------------------------------------


def invoice_amount_due(*, invoice: Invoice) -> int:
    """What the buyer still owes on the invoice: its total less its credit notes (minor units)."""
    credited = invoice.credit_notes.aggregate(total=Sum("amount_minor"))["total"] or 0
    return invoice.total_minor - credited


def invoice_pay(*, invoice_id: int) -> PaymentAttempt | None:
    """Charge the buyer's saved card for an open invoice (an approved one is opened first), off-session. Records the attempt first (its
    idempotency key `invoice-<id>-attempt-<n>`), then calls Stripe, then applies the answer: paid ->
    the invoice is paid and the ledger moves the receivable to Stripe clearing; declined -> the invoice
    stays open with Stripe's reason on the attempt and in `Invoice.payment_error`. An attempt left
    pending (crash, timeout) is resumed with its own key, never doubled. None: nothing was owed (the
    invoice is marked paid without a charge)."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status not in (Invoice.Status.APPROVED, Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
            raise PaymentRefused(_("Only an issued invoice still owed can be paid; this one is “%(status)s”.")
                                 % {"status": invoice.get_status_display()})
        attempt = invoice.payment_attempts.filter(status=PaymentAttempt.Status.PENDING).order_by("attempt").first()
        if attempt is None:
            profile = BillingProfile.objects.filter(organization_id=invoice.buyer_id).first()
            if profile is None or not profile.payment_method_id:
                raise PaymentRefused(_("Save a card on the payment method page first."))
            if invoice.status == Invoice.Status.APPROVED:
                # Approved is issued (numbered, in the ledger); nothing else sends it for collection
                # before the buyer pays, so paying it is what opens it (audited like any move).
                invoice = invoice_set_status(invoice=invoice, status=Invoice.Status.OPEN, reason="sent for collection: the buyer pays it")
            due = invoice_amount_due(invoice=invoice)
            if due <= 0:
                invoice_set_status(invoice=invoice, status=Invoice.Status.PAID, reason="nothing owed: credited in full")
                return None
            number = (invoice.payment_attempts.aggregate(n=Max("attempt"))["n"] or 0) + 1
            attempt = PaymentAttempt.objects.create(
                invoice=invoice, attempt=number, idempotency_key=f"invoice-{invoice.pk}-attempt-{number}", amount_minor=due,
                currency=invoice.currency, stripe_customer_id=profile.stripe_customer_id, stripe_payment_method_id=profile.payment_method_id,
            )
    return _payment_attempt_execute(attempt=attempt)


def _payment_attempt_execute(*, attempt: PaymentAttempt) -> PaymentAttempt:
    customer_id, method_id = attempt.stripe_customer_id, attempt.stripe_payment_method_id
    if not (customer_id and method_id):  # recorded before attempts kept their card (migration 0004)
        profile = BillingProfile.objects.get(organization_id=attempt.invoice.buyer_id)
        customer_id, method_id = customer_id or profile.stripe_customer_id, method_id or profile.payment_method_id
    try:
        intent = gateway.payment_intent_create_off_session(
            amount_minor=attempt.amount_minor, currency=attempt.currency, customer_id=customer_id,
            payment_method_id=method_id, idempotency_key=attempt.idempotency_key,
            metadata={"payment_attempt_id": str(attempt.pk), "invoice_id": str(attempt.invoice_id)},
        )
    except stripe.IdempotencyError as exc:
        # The key was used with other parameters (an attempt recorded before it kept its card, resumed
        # after the card changed): Stripe will never answer this request, so retrying it forever would
        # leave the invoice stuck. The attempt fails; should its first request have charged after all,
        # Stripe's webhook (metadata payment_attempt_id) still records that payment on it.
        logger.error("payment attempt %s: idempotency key reused with other parameters: %s", attempt.pk, exc)
        return payment_attempt_fail(attempt_id=attempt.pk, code="idempotency_error",
                                    reason="This payment could not be resumed with the card now saved; please pay again.")
    except (stripe.CardError, stripe.InvalidRequestError) as exc:
        # Declined, or refused outright: Stripe's answer is final for this attempt.
        error = exc.error
        intent_id = getattr(getattr(error, "payment_intent", None), "id", "") if error else ""
        return payment_attempt_fail(attempt_id=attempt.pk, code=(exc.code or "declined"), intent_id=intent_id or "",
                                    reason=(exc.user_message or str(exc))[:500])
    except stripe.StripeError:
        # Timeout, connection, Stripe 5xx: the outcome is unknown. The attempt stays pending; the next
        # "pay" (or the webhook) resumes it with the same idempotency key, so at most one charge.
        logger.exception("payment attempt %s: Stripe did not answer; left pending", attempt.pk)
        return attempt
    return payment_attempt_apply_intent(attempt_id=attempt.pk, intent=intent)


@transaction.atomic
def payment_attempt_fail(*, attempt_id: int, code: str, reason: str, intent_id: str = "") -> PaymentAttempt:
    invoice = Invoice.objects.select_for_update(of=("self",)).get(payment_attempts__pk=attempt_id)
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
    if intent_id and not attempt.stripe_payment_intent_id:
        attempt.stripe_payment_intent_id = intent_id
    if attempt.status == PaymentAttempt.Status.PENDING:
        _attempt_failed(attempt=attempt, invoice=invoice, code=code, reason=reason)
    attempt.save()
    return attempt


def _attempt_failed(*, attempt: PaymentAttempt, invoice: Invoice, code: str, reason: str) -> None:
    attempt.status = PaymentAttempt.Status.FAILED
    attempt.decline_code = code[:100]
    attempt.failure_reason = reason[:500]
    if invoice.status != Invoice.Status.PAID:  # a late failure of an old attempt never shadows a payment
        invoice.payment_error = attempt.failure_reason
        invoice.save(update_fields=["payment_error"])
        # told once per attempt (its idempotency key), however often its webhook comes
        payment_failed_notify(invoice=invoice, attempt=attempt.idempotency_key, code=attempt.decline_code)


@transaction.atomic
def payment_attempt_apply_intent(*, attempt_id: int, intent) -> PaymentAttempt:
    """Apply a PaymentIntent as Stripe reports it now to its attempt, idempotently: a pending attempt
    becomes succeeded (invoice paid, ledger Dr Stripe clearing / Cr buyer receivables, once) or failed
    (reason kept); a failed attempt still becomes succeeded when Stripe shows it succeeded (we fail
    requires_action at once, but the bank may let it through later); a succeeded attempt never
    changes. Locks the invoice, then the attempt."""
    invoice = Invoice.objects.select_for_update(of=("self",)).get(payment_attempts__pk=attempt_id)
    attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
    if not attempt.stripe_payment_intent_id:
        attempt.stripe_payment_intent_id = intent.id
    late_success = attempt.status == PaymentAttempt.Status.FAILED and intent.status == "succeeded"
    if late_success and (invoice.status not in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
                         or invoice.payment_attempts.filter(status=PaymentAttempt.Status.SUCCEEDED).exists()):
        # Collected for an invoice that is void or paid by another attempt: the money is at Stripe but
        # cannot pay this invoice; finance must return it (kept failed, said loudly).
        logger.error("payment attempt %s: Stripe reports %s succeeded, but invoice %s is %s; refund it by hand",
                     attempt.pk, intent.id, invoice.pk, invoice.status)
        late_success = False
    if attempt.status != PaymentAttempt.Status.PENDING and not late_success:
        attempt.save()
        return attempt
    if intent.status == "succeeded":
        # A pending attempt, or one marked failed on a status that was not final after all
        # (requires_action: the buyer authenticated later) - Stripe's success is recorded once.
        attempt.status = PaymentAttempt.Status.SUCCEEDED
        attempt.decline_code = attempt.failure_reason = ""
        attempt.save()
        _journal_post(kind=JournalEntry.Kind.PAYMENT, invoice=invoice, payment=attempt, currency=invoice.currency,
                      memo=f"invoice {invoice.display_number} paid ({intent.id})",
                      postings=[(LedgerAccount.STRIPE_CLEARING, None, attempt.amount_minor),
                                (LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id, -attempt.amount_minor)])
        invoice.payment_error = ""
        invoice.save(update_fields=["payment_error"])
        invoice_set_status(invoice=invoice, status=Invoice.Status.PAID, reason=f"paid by card ({intent.id})")
        return attempt
    if intent.status in ("requires_payment_method", "canceled", "requires_action"):
        error = _field(intent, "last_payment_error") or {}
        if intent.status == "requires_action":  # off-session: nobody there to authenticate
            error = {"code": "authentication_required", "message": "Your bank asks you to authenticate this payment."}
        _attempt_failed(attempt=attempt, invoice=invoice, code=_field(error, "code") or intent.status,
                        reason=_field(error, "message") or f"The payment {intent.status.replace('_', ' ')}.")
    attempt.save()  # "processing": stays pending until Stripe's webhook says how it ended
    return attempt


def payment_attempt_for_intent(*, intent) -> PaymentAttempt | None:
    """Our attempt behind a PaymentIntent: by its id, else by the attempt id we put in its metadata
    (the answer to the create call may have been lost)."""
    attempt = PaymentAttempt.objects.filter(stripe_payment_intent_id=intent.id).first()
    if attempt is None:
        raw = str(_field(_field(intent, "metadata"), "payment_attempt_id", ""))
        if raw.isdigit():
            attempt = PaymentAttempt.objects.filter(pk=int(raw), stripe_payment_intent_id__in=["", intent.id]).first()
    return attempt


# --- refunds -------------------------------------------------------------------------------------------------------


def refund_for_credit_note(*, credit_note_id: int) -> Refund | None:
    """Return a credit note's amount to the card that paid its invoice (idempotency key
    `credit-note-<id>-refund`; never more than the payment still holds). None: nothing to refund (the
    invoice is not paid - an unpaid invoice just owes less)."""
    with transaction.atomic():
        note = CreditNote.objects.filter(pk=credit_note_id).first()
        if note is None:
            return None
        invoice = Invoice.objects.select_for_update().get(pk=note.invoice_id)
        refund = Refund.objects.filter(credit_note=note).first()
        if refund is None:
            payment = invoice.payment_attempts.filter(status=PaymentAttempt.Status.SUCCEEDED).first()
            if invoice.status != Invoice.Status.PAID or payment is None:
                return None
            if note.created_at < payment.created_at:
                return None  # issued before that attempt was recorded: the charge was already lowered by it
            refunded = payment.refunds.exclude(status=Refund.Status.FAILED).aggregate(total=Sum("amount_minor"))["total"] or 0
            amount = min(note.amount_minor, payment.amount_minor - refunded)
            if amount <= 0:
                return None
            refund = Refund.objects.create(credit_note=note, payment=payment, idempotency_key=f"credit-note-{note.pk}-refund",
                                           amount_minor=amount, currency=invoice.currency)
        if refund.status != Refund.Status.PENDING:
            return refund
    try:
        answer = gateway.refund_create(payment_intent_id=refund.payment.stripe_payment_intent_id, amount_minor=refund.amount_minor,
                                       metadata={"refund_id": str(refund.pk), "credit_note_id": str(note.pk)},
                                       idempotency_key=refund.idempotency_key)
    except stripe.InvalidRequestError as exc:
        return refund_apply(refund_id=refund.pk, stripe_refund=None, failure=(exc.user_message or str(exc)))
    except stripe.StripeError:
        logger.exception("refund %s: Stripe did not answer; left pending", refund.pk)
        return refund
    return refund_apply(refund_id=refund.pk, stripe_refund=answer)


@transaction.atomic
def refund_apply(*, refund_id: int, stripe_refund, failure: str = "") -> Refund:
    """Apply Stripe's refund (or a refusal) to our row, once: succeeded -> ledger Dr buyer receivables /
    Cr Stripe clearing (the buyer's credit is settled in money)."""
    refund = Refund.objects.select_related("payment__invoice").get(pk=refund_id)
    invoice = Invoice.objects.select_for_update().get(pk=refund.payment.invoice_id)
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    if stripe_refund is not None and not refund.stripe_refund_id:
        refund.stripe_refund_id = stripe_refund.id
    if refund.status == Refund.Status.PENDING:
        state = "failed" if stripe_refund is None else stripe_refund.status
        if state == "succeeded":
            refund.status = Refund.Status.SUCCEEDED
            refund.save()
            _journal_post(kind=JournalEntry.Kind.REFUND, invoice=invoice, credit_note=refund.credit_note, refund=refund,
                          currency=refund.currency, memo=f"refund for credit note {refund.credit_note_id}",
                          postings=[(LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id, refund.amount_minor),
                                    (LedgerAccount.STRIPE_CLEARING, None, -refund.amount_minor)])
            return refund
        if state in ("failed", "canceled"):
            refund.status = Refund.Status.FAILED
            refund.failure_reason = (failure or (_field(stripe_refund, "failure_reason") if stripe_refund else "") or state)[:500]
    refund.save()
    return refund


# --- provider payouts ----------------------------------------------------------------------------------------------


def payouts_due() -> list[tuple[int, int, str, int]]:
    """(invoice id, provider id, currency, amount) of every paid invoice whose provider payable is still
    open in the ledger and has no live payout. The ledger is the one truth: approval credited each
    provider its share (charges less the platform fee, billing.services.platform_fee_minor); a payout
    debits it back; a failed payout's reversal opens it again."""
    rows = (JournalPosting.objects.filter(account=LedgerAccount.PROVIDER_PAYABLES, entry__invoice__status=Invoice.Status.PAID)
            .values_list("entry__invoice", "organization", "currency").annotate(balance=Sum("amount_minor")).filter(balance__lt=0)
            .order_by("entry__invoice", "organization"))
    live = set(Payout.objects.exclude(status=Payout.Status.FAILED).values_list("invoice_id", "provider_id"))
    return [(invoice_id, provider_id, currency, -balance) for invoice_id, provider_id, currency, balance in rows
            if (invoice_id, provider_id) not in live]


def payout_create(*, invoice_id: int, provider_id: int) -> Payout | None:
    """Record the payout of the provider's open payable on a paid invoice (pending), if it has a
    connected account; the key `payout-invoice-<id>-provider-<id>-<attempt>` is fixed from here on."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        live = Payout.objects.filter(invoice=invoice, provider_id=provider_id).exclude(status=Payout.Status.FAILED).first()
        if live is not None or invoice.status != Invoice.Status.PAID:
            return live
        profile = BillingProfile.objects.filter(organization_id=provider_id).first()
        if profile is None or not profile.stripe_connect_account_id:
            logger.info("payout of invoice %s to provider %s waits for a connected account", invoice_id, provider_id)
            return None
        balance = (JournalPosting.objects.filter(account=LedgerAccount.PROVIDER_PAYABLES, entry__invoice=invoice, organization_id=provider_id)
                   .aggregate(total=Sum("amount_minor"))["total"] or 0)
        if balance >= 0:
            return None
        number = (Payout.objects.filter(invoice=invoice, provider_id=provider_id).aggregate(n=Max("attempt"))["n"] or 0) + 1
        payout = Payout.objects.create(
            provider_id=provider_id, invoice=invoice, attempt=number, currency=invoice.currency, amount_minor=-balance,
            destination=profile.stripe_connect_account_id, idempotency_key=f"payout-invoice-{invoice.pk}-provider-{provider_id}-{number}",
        )
        PayoutStatusChange.objects.create(payout=payout, from_status="", to_status=Payout.Status.PENDING, reason="payout run")
    return payout


def payout_send(*, payout_id: int) -> Payout:
    """Create the Connect transfer of a pending payout (same key on every retry) and apply the answer."""
    payout = Payout.objects.get(pk=payout_id)
    if payout.status != Payout.Status.PENDING:
        return payout
    try:
        transfer = gateway.transfer_create(
            amount_minor=payout.amount_minor, currency=payout.currency, destination=payout.destination,
            transfer_group=f"invoice-{payout.invoice_id}", idempotency_key=payout.idempotency_key,
            metadata={"payout_id": str(payout.pk), "invoice_id": str(payout.invoice_id)},
        )
    except (stripe.InvalidRequestError, stripe.PermissionError, stripe.AuthenticationError) as exc:
        return payout_set_status(payout_id=payout.pk, status=Payout.Status.FAILED, reason=(exc.user_message or str(exc)))
    except stripe.StripeError:
        logger.exception("payout %s: Stripe did not answer; left pending for the next run", payout.pk)
        return payout
    return payout_apply_transfer(payout_id=payout.pk, transfer=transfer)


def payout_apply_transfer(*, payout_id: int, transfer) -> Payout:
    """Apply a transfer as Stripe reports it now: reversed -> failed (the payable opens again); created
    -> in transit; landed in the connected account (`destination_payment`) on a re-read -> paid."""
    with transaction.atomic():
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if not payout.stripe_transfer_id:
            payout.stripe_transfer_id = transfer.id
            payout.save(update_fields=["stripe_transfer_id", "updated_at"])
        reversed_ = bool(_field(transfer, "reversed")) or (_field(transfer, "amount_reversed") or 0) >= payout.amount_minor
        if reversed_:
            return payout_set_status(payout_id=payout.pk, status=Payout.Status.FAILED, reason="transfer reversed at Stripe")
        if payout.status == Payout.Status.PENDING:
            payout = payout_set_status(payout_id=payout.pk, status=Payout.Status.IN_TRANSIT, reason=f"transfer {transfer.id}")
        return payout


def payout_refresh(*, payout_id: int) -> Payout:
    """Re-read an in-transit (or paid) payout's transfer from Stripe and settle it."""
    payout = Payout.objects.get(pk=payout_id)
    if not payout.stripe_transfer_id:
        return payout_send(payout_id=payout_id)
    transfer = gateway.transfer_retrieve(transfer_id=payout.stripe_transfer_id)
    payout = payout_apply_transfer(payout_id=payout_id, transfer=transfer)
    if payout.status == Payout.Status.IN_TRANSIT and _field(transfer, "destination_payment"):
        payout = payout_set_status(payout_id=payout_id, status=Payout.Status.PAID, reason="transfer landed in the connected account")
    return payout


@transaction.atomic
def payout_set_status(*, payout_id: int, status: str, reason: str = "") -> Payout:
    """The one transition service of payouts: row lock, Payout.TRANSITIONS, an audit row, and the ledger -
    into in_transit: Dr provider payables / Cr Stripe clearing; out of a posted state into failed: that
    entry reversed. Setting the status it has is a no-op."""
    payout = Payout.objects.select_for_update().get(pk=payout_id)
    if payout.status == status:
        return payout
    if status not in Payout.TRANSITIONS[payout.status]:
        raise PayoutStateError(_("A payout cannot go from %(from)s to %(to)s.")
                               % {"from": payout.get_status_display(), "to": Payout.Status(status).label})
    PayoutStatusChange.objects.create(payout=payout, from_status=payout.status, to_status=status, reason=reason[:500])
    if status == Payout.Status.IN_TRANSIT:
        _journal_post(kind=JournalEntry.Kind.PAYOUT, invoice=payout.invoice, payout=payout, currency=payout.currency,
                      memo=f"payout {payout.pk} ({payout.stripe_transfer_id})",
                      postings=[(LedgerAccount.PROVIDER_PAYABLES, payout.provider_id, payout.amount_minor),
                                (LedgerAccount.STRIPE_CLEARING, None, -payout.amount_minor)])
        # the transfer left for the provider: told once per payout, after commit (notify's email task)
        payout_sent_notify(provider=payout.provider, payout_ref=f"P{payout.pk}", amount_minor=payout.amount_minor,
                           currency=payout.currency, link="/provider/earnings/")
    if status == Payout.Status.FAILED:
        payout.failure_reason = reason[:500]
        for entry in payout.journal_entries.filter(kind=JournalEntry.Kind.PAYOUT, reversed_by__isnull=True):
            _journal_post(kind=JournalEntry.Kind.PAYOUT_FAILED, invoice=payout.invoice, payout=payout, currency=payout.currency,
                          reverses=entry, memo=f"payout {payout.pk} failed: {reason[:200]}",
                          postings=[(p.account, p.organization_id, -p.amount_minor) for p in entry.postings.all()])
    payout.status = status
    payout.save(update_fields=["status", "failure_reason", "updated_at"])
    return payout


def payout_run() -> dict[str, int]:
    """The payout run (beat, command): send what is due, resume pending payouts, settle those in transit.
    Safe to run twice or at once: one live payout per provider and invoice (database-enforced), and
    every transfer call carries its payout's fixed key."""
    counts = {"created": 0, "sent": 0, "settled": 0}
    for invoice_id, provider_id, _currency, _amount in payouts_due():
        if payout_create(invoice_id=invoice_id, provider_id=provider_id) is not None:
            counts["created"] += 1
    for payout_id in Payout.objects.filter(status=Payout.Status.PENDING).order_by("pk").values_list("pk", flat=True):
        if payout_send(payout_id=payout_id).status != Payout.Status.PENDING:
            counts["sent"] += 1
    for payout_id in Payout.objects.filter(status=Payout.Status.IN_TRANSIT).order_by("pk").values_list("pk", flat=True):
        try:
            if payout_refresh(payout_id=payout_id).status != Payout.Status.IN_TRANSIT:
                counts["settled"] += 1
        except stripe.StripeError:
            logger.exception("payout %s: could not re-read its transfer", payout_id)
    return counts


# --- the webhook inbox ---------------------------------------------------------------------------------------------


def stripe_event_receive(*, payload: bytes, signature: str) -> StripeEvent:
    """Verify and store a webhook delivery once by its event id; the processing task is enqueued after
    commit (again for a redelivery of an event not processed yet). Raises ValueError /
    stripe.SignatureVerificationError for a bad payload or signature (nothing stored)."""
    event = gateway.webhook_event_construct(payload=payload, signature=signature)
    obj = event.data.object
    with transaction.atomic():
        row, created = StripeEvent.objects.get_or_create(event_id=event.id, defaults={
            "type": event.type, "object_id": (_field(obj, "id") or "")[:255], "account": (_field(event, "account") or "")[:255],
            "payload": event.to_dict(),
        })
        if created or row.status in (StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED):
            from billing.tasks import stripe_event_process_task

            enqueue_after_commit(stripe_event_process_task, event_pk=row.pk)  # stripe_events_sweep re-drives a lost one
    return row


def stripe_event_process(*, event_pk: int) -> StripeEvent | None:
    """Act on one stored event, once (row lock; a processed event is skipped). The object is re-read
    from Stripe and applied through the same services as the synchronous calls."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().filter(pk=event_pk).first()
        if event is None or event.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
            return event
        try:
            with transaction.atomic():
                acted = _stripe_event_dispatch(event=event)
        except Exception as exc:  # noqa: BLE001 - recorded on the row for finance; the sweep retries it
            logger.exception("stripe event %s could not be processed", event.event_id)
            event.status = StripeEvent.Status.FAILED
            event.error = f"{type(exc).__name__}: {exc}"[:1000]
        else:
            event.status = StripeEvent.Status.PROCESSED if acted else StripeEvent.Status.IGNORED
            event.error = ""
        event.processed_at = timezone.now()
        event.save(update_fields=["status", "error", "processed_at"])
    return event


def _stripe_event_dispatch(*, event: StripeEvent) -> bool:
    kind = event.type
    if kind.startswith("payment_intent."):
        intent = gateway.payment_intent_retrieve(payment_intent_id=event.object_id)
        attempt = payment_attempt_for_intent(intent=intent)
        if attempt is None:
            return False
        payment_attempt_apply_intent(attempt_id=attempt.pk, intent=intent)
        return True
    if kind.startswith("refund.") or kind == "charge.refunded":
        intent_id = event.payload.get("data", {}).get("object", {}).get("payment_intent") or ""
        refunds = Refund.objects.filter(Q(stripe_refund_id=event.object_id) | Q(payment__stripe_payment_intent_id=intent_id, status="pending")
                                        if intent_id else Q(stripe_refund_id=event.object_id))
        acted = False
        for refund in refunds.filter(~Q(stripe_refund_id="")):
            refund_apply(refund_id=refund.pk, stripe_refund=gateway.refund_retrieve(refund_id=refund.stripe_refund_id))
            acted = True
        return acted
    if kind.startswith("transfer."):
        payout = Payout.objects.filter(stripe_transfer_id=event.object_id).first()
        if payout is None:
            return False
        payout_refresh(payout_id=payout.pk)
        return True
    return False


def refunds_sweep() -> int:
    """Refunds whose task was lost or whose Stripe call got no answer, driven again with their own key
    (refund_for_credit_note): pending refunds, and credit notes of paid invoices issued after the payment
    was recorded that have no refund yet. Returns how many credit notes were tried."""
    settled = timezone.now() - timedelta(minutes=1)  # leave the on-commit task its chance first
    pending = Refund.objects.filter(status=Refund.Status.PENDING, created_at__lt=settled).values_list("credit_note_id", flat=True)
    missing = (CreditNote.objects.filter(invoice__status=Invoice.Status.PAID, refund__isnull=True, created_at__lt=settled,
                                         invoice__payment_attempts__status=PaymentAttempt.Status.SUCCEEDED,
                                         created_at__gt=F("invoice__payment_attempts__created_at"))
               .values_list("pk", flat=True))
    note_ids = sorted(set(pending) | set(missing))[:500]
    for note_id in note_ids:
        try:
            refund_for_credit_note(credit_note_id=note_id)
        except Exception:  # noqa: BLE001 - one bad row must not stop the others; it is tried again next sweep
            logger.exception("refund sweep: credit note %s", note_id)
    return len(note_ids)


def stripe_events_sweep() -> int:
    """Process again the events left received (their task lost) or failed. Returns how many were tried."""
    pks = list(StripeEvent.objects.filter(status__in=[StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED],
                                          received_at__lt=timezone.now() - timedelta(minutes=1))
               .order_by("pk").values_list("pk", flat=True)[:500])
    for pk in pks:
        stripe_event_process(event_pk=pk)
    return len(pks)
