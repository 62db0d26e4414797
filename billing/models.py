"""Billing's data: billing accounts (the run's cursor), invoices and their lines with evidence,
credit notes, number sequences, and the double-entry ledger. See billing/__init__.py for the rules."""

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import RangeBoundary, RangeOperators
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from accounts.models import TIME_ZONE_CHOICES, Organization
from inventory.models import Currency
from marketplace.models import Reservation, TsTzRange


class BillingAccount(models.Model):
    """One per buyer organization: where its billing run stands (Zulip's invoiced_through +
    invoicing_status). Written only by billing.services under a row lock."""

    class InvoicingStatus(models.TextChoices):
        DONE = "done", _("Done")  # every period up to invoiced_through is invoiced; nothing in flight
        # A run took this account and has not finished: after a crash the next run picks it up again
        # (each period is invoiced in one transaction with the cursor, so nothing is half done).
        STARTED = "started", _("Started")

    organization = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="billing_account")
    # Monthly periods start on the 1st, 00:00, in this zone (the buyer's local month).
    time_zone = models.CharField(max_length=64, default="Asia/Shanghai", choices=TIME_ZONE_CHOICES)
    invoicing_status = models.CharField(max_length=16, choices=InvoicingStatus.choices, default=InvoicingStatus.DONE)
    # Everything before this instant (UTC) is invoiced; NULL = never run. Moves only forward, in the
    # same transaction as the invoices of the period it closes. Never set by hand.
    invoiced_through = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"billing account of {self.organization_id}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")  # built by the run; may be rebuilt or voided; no number, no ledger
        PENDING_REVIEW = "pending_review", _("Pending review")  # waiting for finance
        APPROVED = "approved", _("Approved")  # numbered and posted to the ledger; corrections are credit notes
        OPEN = "open", _("Open")  # sent to the buyer, to be collected
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")  # never owed; its charge lines free their usage (see InvoiceLine.is_void)
        UNCOLLECTIBLE = "uncollectible", _("Uncollectible")  # owed but written off

    # Allowed next states; billing.services.invoice_set_status refuses anything else.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.DRAFT: frozenset({Status.PENDING_REVIEW, Status.VOID}),
        Status.PENDING_REVIEW: frozenset({Status.APPROVED, Status.VOID}),
        Status.APPROVED: frozenset({Status.OPEN, Status.VOID}),
        Status.OPEN: frozenset({Status.PAID, Status.VOID, Status.UNCOLLECTIBLE}),
        Status.UNCOLLECTIBLE: frozenset({Status.PAID}),
        Status.PAID: frozenset(),
        Status.VOID: frozenset(),
    }
    # From approval on the invoice is a fixed document: no line changes, corrections by credit note.
    ISSUED = frozenset({Status.APPROVED, Status.OPEN, Status.PAID, Status.UNCOLLECTIBLE})

    buyer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3, choices=Currency.choices)  # never converted
    # The billing period, half-open [period_start, period_end), UTC (a local month of the buyer).
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Changed only through billing.services.invoice_set_status (audited).
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # Sequential per currency without gaps, allocated under a lock at approval (a draft has none, so a
    # voided draft leaves no hole). Never modify.
    number = models.PositiveIntegerField(null=True, blank=True)
    # Sum of the lines (charges positive, credits negative), minor units. Written with the lines.
    total_minor = models.BigIntegerField(default=0)
    # Why the last collection attempt failed, in words for the buyer ("Your card was declined."); "" when
    # none failed or once paid. Written only by billing.payments with the PaymentAttempt it comes from.
    payment_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "currency", "id"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "number"], name="invoice_number_unique_per_currency"),
            # One live invoice per buyer, currency and period: a second run of the same month cannot add one.
            models.UniqueConstraint(
                fields=["buyer", "currency", "period_start"], condition=~Q(status="void"), name="invoice_one_per_buyer_currency_period"
            ),
            models.CheckConstraint(condition=Q(period_end__gt=F("period_start")), name="invoice_period_positive"),
            # A number exists exactly from approval on (void may be either: a voided draft has none).
            models.CheckConstraint(
                condition=Q(status__in=["draft", "pending_review", "void"]) | Q(number__isnull=False),
                name="invoice_issued_has_number",
            ),
        ]
        indexes = [models.Index(fields=["buyer", "-period_start"]), models.Index(fields=["status"])]

    def __str__(self):
        return f"invoice {self.display_number} ({self.currency})"

    @property
    def display_number(self) -> str:
        return f"{self.currency}-{self.number:06d}" if self.number else f"draft-{self.pk}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        CHARGE = "charge", _("Charge")  # billable card-seconds at the locked price
        SLA_CREDIT = "sla_credit", _("SLA credit")  # credit for recorded downtime (negative amount)

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    reservation = models.ForeignKey(Reservation, on_delete=models.PROTECT, related_name="+")
    # Whose hardware served it: a reservation moved to another provider's cards gets one line per
    # provider, so each provider's payable is exact. Never modify.
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The billed range [period_start, period_end): the invoice's period. Never modify.
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    card_seconds = models.BigIntegerField()  # charge: billable card-seconds; credit: card-seconds down
    price_per_card_hour_minor = models.PositiveBigIntegerField()  # locked at booking. Never modify.
    # Signed minor units: charges > 0, credits < 0; rounded once by billing.rating.round_minor. Never modify.
    amount_minor = models.BigIntegerField()
    # Copy of "the invoice is void", kept on the line so PostgreSQL's exclusion constraint below can
    # ignore void invoices. Set only by invoice_set_status, in the same transaction as the status.
    is_void = models.BooleanField(default=False)

    class Meta:
        ordering = ["invoice_id", "reservation_id", "provider_id", "kind"]
        constraints = [
            # No usage invoiced twice: two charge lines of non-void invoices never cover overlapping
            # time of the same reservation - whatever runs race, the database refuses the second.
            ExclusionConstraint(
                name="invoice_line_no_double_billing",
                expressions=[
                    ("reservation", RangeOperators.EQUAL),
                    ("provider", RangeOperators.EQUAL),
                    (TsTzRange("period_start", "period_end", RangeBoundary()), RangeOperators.OVERLAPS),
                ],
                condition=Q(kind="charge", is_void=False),
            ),
            models.CheckConstraint(
                condition=(Q(kind="charge") & Q(amount_minor__gte=0)) | (Q(kind="sla_credit") & Q(amount_minor__lte=0)),
                name="invoice_line_sign_by_kind",
            ),
        ]

    def __str__(self):
        return f"{self.kind} of reservation {self.reservation_id}: {self.amount_minor}"


class InvoiceLineEvidence(models.Model):
    """Why a charge line says what it says, per device and hour: the billable seconds of the rating
    and the rollup's sampled usage (marketplace.metering) as read when the line was built. Never modify."""

    line = models.ForeignKey(InvoiceLine, on_delete=models.CASCADE, related_name="evidence")
    device_id = models.BigIntegerField()  # inventory.Device id (no FK: evidence outlives hardware)
    hour = models.DateTimeField()  # UTC, on the hour
    billable_seconds = models.PositiveIntegerField()
    samples = models.PositiveIntegerField(default=0)  # 0 = no usage sample for that hour
    busy_seconds = models.FloatField(null=True, blank=True)
    utilization_mean = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["hour", "device_id"]
        constraints = [models.UniqueConstraint(fields=["line", "device_id", "hour"], name="evidence_one_per_device_hour")]

    def __str__(self):
        return f"line {self.line_id}: device {self.device_id} at {self.hour}"


class InvoiceStatusChange(models.Model):
    """Who moved an invoice from which status to which, and why. Append-only."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Invoice.Status.choices, blank=True)  # "" = created
    to_status = models.CharField(max_length=16, choices=Invoice.Status.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"invoice {self.invoice_id}: {self.from_status or 'new'} -> {self.to_status}"


class NumberSequence(models.Model):
    """The last number given per (document kind, currency). Locked (SELECT ... FOR UPDATE) by the
    transaction that numbers a document, so a rollback gives the number back: no gaps, no duplicates."""

    kind = models.CharField(max_length=16)  # "invoice" | "credit_note"
    currency = models.CharField(max_length=3, choices=Currency.choices)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "currency"], name="number_sequence_unique")]

    def __str__(self):
        return f"{self.kind} {self.currency}: {self.last_number}"


class CreditNote(models.Model):
    """A correction of an issued invoice (never an edit of it): reduces what the buyer owes. Append-only."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    currency = models.CharField(max_length=3, choices=Currency.choices)  # the invoice's
    number = models.PositiveIntegerField()  # sequential per currency without gaps, like invoices
    amount_minor = models.PositiveBigIntegerField()  # what is credited, > 0; never more than still owed
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "number"], name="credit_note_number_unique_per_currency"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="credit_note_amount_positive"),
        ]

    def __str__(self):
        return self.display_number

    @property
    def display_number(self) -> str:
        return f"CN-{self.currency}-{self.number:06d}"


class LedgerAccount(models.TextChoices):
    """The ledger's accounts (see billing/__init__.py for what each holds and its normal sign)."""

    BUYER_RECEIVABLES = "buyer_receivables", _("Buyer receivables")
    STRIPE_CLEARING = "stripe_clearing", _("Stripe clearing")
    PLATFORM_FEE_REVENUE = "platform_fee_revenue", _("Platform fee revenue")
    PROVIDER_PAYABLES = "provider_payables", _("Provider payables")
    CREDITS_ISSUED = "credits_issued", _("Credits issued")


class JournalEntry(models.Model):
    """One business event in the ledger. Append-only (a trigger refuses UPDATE and DELETE); a
    correction is a new entry that reverses it. Its postings sum to zero per currency: a deferred
    constraint trigger checks that at commit (migration billing 0002)."""

    class Kind(models.TextChoices):
        INVOICE_APPROVED = "invoice_approved", _("Invoice approved")
        INVOICE_VOIDED = "invoice_voided", _("Invoice voided (reversal)")
        CREDIT_NOTE = "credit_note", _("Credit note")
        PAYMENT = "payment", _("Payment collected")
        REFUND = "refund", _("Refund")
        PAYOUT = "payout", _("Payout to provider")
        PAYOUT_FAILED = "payout_failed", _("Payout failed (reversal)")

    kind = models.CharField(max_length=32, choices=Kind.choices)
    invoice = models.ForeignKey(Invoice, null=True, on_delete=models.PROTECT, related_name="journal_entries")
    credit_note = models.ForeignKey(CreditNote, null=True, on_delete=models.PROTECT, related_name="journal_entries")
    reverses = models.ForeignKey("self", null=True, on_delete=models.PROTECT, related_name="reversed_by")
    payment = models.ForeignKey("PaymentAttempt", null=True, on_delete=models.PROTECT, related_name="journal_entries")
    refund = models.ForeignKey("Refund", null=True, on_delete=models.PROTECT, related_name="journal_entries")
    payout = models.ForeignKey("Payout", null=True, on_delete=models.PROTECT, related_name="journal_entries")
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "journal entries"

    def __str__(self):
        return f"journal entry {self.pk} ({self.kind})"


class JournalPosting(models.Model):
    """One side of an entry: debit > 0, credit < 0, integer minor units of `currency`. Append-only."""

    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    account = models.CharField(max_length=32, choices=LedgerAccount.choices)
    # Whose sub-account: the buyer for receivables, the provider for payables; NULL for platform accounts.
    organization = models.ForeignKey(Organization, null=True, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3, choices=Currency.choices)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["entry_id", "id"]
        indexes = [models.Index(fields=["account", "currency"])]
        constraints = [models.CheckConstraint(condition=~Q(amount_minor=0), name="journal_posting_not_zero")]

    def __str__(self):
        return f"{self.account} {self.amount_minor} {self.currency}"


# --- payments (Stripe) ----------------------------------------------------------------------------------------------


class BillingProfile(models.Model):
    """An organization's identities at Stripe: the customer (buyers) with its saved payment method, and
    the Connect account payouts go to (providers). The customer and card are written only by
    billing.payments (Stripe's answers); the Connect account id is entered by finance (admin)."""

    organization = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="billing_profile")
    # Created lazily, with an idempotency key derived from the organization (never two customers).
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    # The saved card charged off-session for open invoices ("" = none saved yet).
    payment_method_id = models.CharField(max_length=255, blank=True, default="")
    payment_method_label = models.CharField(max_length=100, blank=True, default="")  # "visa ending 4242"
    # The provider's Stripe Connect account (acct_...); payouts are transfers to it. Set by finance / onboarding.
    stripe_connect_account_id = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stripe_customer_id"], condition=~Q(stripe_customer_id=""), name="billing_profile_customer_unique"),
        ]

    def __str__(self):
        return f"billing profile of {self.organization_id}"


class PaymentAttempt(models.Model):
    """One try at collecting an invoice: one PaymentIntent, created with the idempotency key
    `invoice-<id>-attempt-<n>` (so a retried call after a crash is the same charge, never a second)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")  # recorded before the gateway call; its outcome not known yet
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")  # declined (or refused by Stripe): the reason is kept

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payment_attempts")
    attempt = models.PositiveIntegerField()  # 1, 2, ... per invoice
    idempotency_key = models.CharField(max_length=100, unique=True)
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=Currency.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    # The customer and card this attempt charges, fixed when it is recorded: a resumed attempt must send
    # Stripe the same request under its key (a card saved since would be an IdempotencyError).
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    stripe_payment_method_id = models.CharField(max_length=255, blank=True, default="")
    decline_code = models.CharField(max_length=100, blank=True, default="")  # Stripe's code, e.g. card_declined
    failure_reason = models.CharField(max_length=500, blank=True, default="")  # Stripe's message, shown to the buyer
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["invoice_id", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="payment_attempt_unique_number"),
            # at most one payment collected per invoice, whatever calls and webhooks race
            models.UniqueConstraint(fields=["invoice"], condition=Q(status="succeeded"), name="payment_attempt_one_success"),
            models.UniqueConstraint(fields=["stripe_payment_intent_id"], condition=~Q(stripe_payment_intent_id=""),
                                    name="payment_attempt_intent_unique"),
        ]

    def __str__(self):
        return f"payment attempt {self.attempt} of invoice {self.invoice_id}: {self.status}"


class Refund(models.Model):
    """Money returned to the buyer for a credit note on a paid invoice (idempotency key `credit-note-<id>-refund`)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    credit_note = models.OneToOneField(CreditNote, on_delete=models.PROTECT, related_name="refund")
    payment = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    idempotency_key = models.CharField(max_length=100, unique=True)
    amount_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=Currency.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_refund_id = models.CharField(max_length=255, blank=True, default="")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"refund of {self.credit_note_id}: {self.status}"


class Payout(models.Model):
    """A provider's share of one paid invoice, sent as a Stripe Connect transfer to its connected
    account (`transfer_group` = the invoice; idempotency key `payout-<invoice>-<provider>-<attempt>`)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")  # recorded before the transfer call
        IN_TRANSIT = "in_transit", _("In transit")  # the transfer exists; posted to the ledger
        PAID = "paid", _("Paid")  # Stripe confirmed the transfer stands (not reversed)
        FAILED = "failed", _("Failed")  # refused or reversed; the ledger entry (if any) reversed; the next run retries

    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.PENDING: frozenset({Status.IN_TRANSIT, Status.FAILED}),
        Status.IN_TRANSIT: frozenset({Status.PAID, Status.FAILED}),
        Status.PAID: frozenset({Status.FAILED}),  # a transfer reversed later
        Status.FAILED: frozenset(),
    }

    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="payouts")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payouts")
    attempt = models.PositiveIntegerField(default=1)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    amount_minor = models.PositiveBigIntegerField()
    destination = models.CharField(max_length=255)  # the connected account (acct_...) at the time of the transfer
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "provider", "attempt"], name="payout_unique_attempt"),
            # one live payout per provider and invoice: a second run cannot pay twice
            models.UniqueConstraint(fields=["invoice", "provider"], condition=~Q(status="failed"), name="payout_one_live"),
        ]

    def __str__(self):
        return f"payout {self.pk} to {self.provider_id}: {self.status}"


class PayoutStatusChange(models.Model):
    """Audit of payout moves. Append-only."""

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"payout {self.payout_id}: {self.from_status or 'new'} -> {self.to_status}"


class StripeEvent(models.Model):
    """The webhook inbox: each Stripe event stored once by its id, then processed by a task that re-reads
    the object from Stripe (the payload is kept for the record, never trusted for state)."""

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")  # a type billing does not act on
        FAILED = "failed", _("Failed")  # processing raised; retried by the next delivery or the sweep

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=255, blank=True, default="")
    account = models.CharField(max_length=255, blank=True, default="")  # Connect: the connected account, if any
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.CharField(max_length=1000, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self):
        return f"stripe event {self.event_id} ({self.type})"
