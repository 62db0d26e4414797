"""Writes of billing: the billing run, the invoice state machine, credit notes and the ledger.

See billing/__init__.py for the rules (rating, run, numbering, ledger accounts).
"""

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import Membership, Organization, User
from billing.models import (
    BillingAccount,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceLineEvidence,
    InvoiceStatusChange,
    JournalEntry,
    JournalPosting,
    LedgerAccount,
    NumberSequence,
)
from billing.notifications import invoice_issued_notify
from billing.rating import SlaPolicy, Span, rate_reservation, round_minor
from billing.selectors import reservation_downtimes
from config.tasks import enqueue_after_commit
from inventory.pricing import format_money
from marketplace.metering.selectors import reservations_usage_hours_between
from marketplace.selectors import (
    reservation_segments_first_start,
    reservation_segments_of_buyer_between,
    reservations_segments,
)

logger = logging.getLogger(__name__)


class InvoiceStateError(Exception):
    """A move the invoice's state machine does not allow (or a change to an issued invoice)."""


class BillingRunIncomplete(Exception):
    """The run invoiced everyone it could; these organizations' months were refused by the database."""

    def __init__(self, *, organization_ids: list[int], created: int):
        self.organization_ids = organization_ids
        self.created = created
        super().__init__(f"{len(organization_ids)} organization(s) could not be invoiced ({created} invoice(s) created): "
                         f"{organization_ids[:20]}")


class CreditNoteRefused(Exception):
    """A credit note that cannot be issued: invoice not issued, or more than it still owes."""


class ReviewReasonMissing(Exception):
    """A finance review action (approve, void) without a reason: the audit row must say why."""


def sla_policy() -> SlaPolicy:
    return SlaPolicy(credit_multiplier=Fraction(str(settings.BILLING_SLA_CREDIT_MULTIPLIER)))


def platform_fee_minor(amount_minor: int) -> int:
    """The platform's share of a charge: PLATFORM_FEE_BPS basis points, rounded by the one rule."""
    return round_minor(Fraction(amount_minor * settings.PLATFORM_FEE_BPS, 10_000))


# --- periods -------------------------------------------------------------------------------------------------------


def local_month_start(*, instant: datetime, time_zone: str) -> datetime:
    """The start (UTC) of the local month of `time_zone` that contains `instant`."""
    local = instant.astimezone(ZoneInfo(time_zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def next_local_month_start(*, instant: datetime, time_zone: str) -> datetime:
    local = instant.astimezone(ZoneInfo(time_zone))
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def _next_period(account: BillingAccount, now: datetime) -> tuple[datetime, datetime] | None:
    """The next whole local month after the cursor that has ended by `now` (None: nothing due)."""
    start = account.invoiced_through
    if start is None:
        return None
    end = next_local_month_start(instant=start, time_zone=account.time_zone)
    return (start, end) if end <= now else None


# --- the billing run -----------------------------------------------------------------------------------------------


def _build_period(*, organization_id: int, period_start: datetime, period_end: datetime, currency: str | None = None,
                  reason: str = "billing run", actor: User | None = None) -> list[Invoice]:
    """Draft invoices (one per currency) for the buyer's usage in [period_start, period_end): a charge
    line (and an SLA credit line when there was downtime) per reservation and provider, each charge
    with its device-hour evidence. Runs inside the caller's transaction; a fixed number of queries
    per buyer and period (set-based inserts), whatever the number of reservations. `currency`: only
    that currency's reservations (a redraft rebuilds the one voided invoice, not its live siblings)."""
    segments = list(reservation_segments_of_buyer_between(buyer_id=organization_id, start=period_start, end=period_end))
    if currency is not None:
        segments = [segment for segment in segments if segment.reservation.currency == currency]
    if not segments:
        return []
    # Rated with ALL their segments (those outside the period clip to nothing): a downtime in this period
    # whose node's segment closed in the last one (a failover just before midnight) still finds the cards.
    segments = list(reservations_segments(reservation_ids=sorted({segment.reservation_id for segment in segments})))
    by_key: dict[tuple[int, int], list] = defaultdict(list)
    reservations = {}
    for segment in segments:
        by_key[(segment.reservation_id, segment.provider_id)].append(segment)
        reservations[segment.reservation_id] = segment.reservation
    downtimes = reservation_downtimes(reservation_ids=list(reservations), start=period_start, end=period_end)
    policy = sla_policy()
    rated = []  # (reservation, provider id, rating)
    for (reservation_id, provider_id), group in sorted(by_key.items()):
        reservation = reservations[reservation_id]
        rating = rate_reservation(
            status=reservation.status,
            spans=[
                Span(node_id=s.node_id, device_ids=tuple(s.device_ids), started_at=s.started_at, ended_at=s.ended_at,
                     price_per_card_hour_minor=s.price_per_card_hour_minor)
                for s in group
            ],
            downtimes=downtimes.get(reservation_id, []),
            period_start=period_start, period_end=period_end, policy=policy,
        )
        if rating.card_seconds:  # nothing served (or failed/cancelled): no line, and no credit on nothing
            rated.append((reservation, provider_id, rating))
    if not rated:
        return []
    invoices: dict[str, Invoice] = {}
    for currency in sorted({reservation.currency for reservation, _, _ in rated}):
        invoices[currency] = Invoice.objects.create(buyer_id=organization_id, currency=currency, period_start=period_start,
                                                    period_end=period_end)
    InvoiceStatusChange.objects.bulk_create([
        InvoiceStatusChange(invoice=invoice, from_status="", to_status=Invoice.Status.DRAFT, reason=reason[:500], actor=actor) for invoice in invoices.values()
    ])
    lines, charges = [], []
    for reservation, provider_id, rating in rated:
        common = dict(invoice=invoices[reservation.currency], reservation_id=reservation.pk, provider_id=provider_id,
                      period_start=period_start, period_end=period_end, price_per_card_hour_minor=reservation.price_per_card_hour_minor)
        charge = InvoiceLine(kind=InvoiceLine.Kind.CHARGE, card_seconds=rating.card_seconds, amount_minor=rating.charge_minor, **common)
        lines.append(charge)
        charges.append((charge, rating))
        if rating.sla_credit_minor:
            lines.append(InvoiceLine(kind=InvoiceLine.Kind.SLA_CREDIT, card_seconds=rating.down_card_seconds,
                                     amount_minor=-rating.sla_credit_minor, **common))
    InvoiceLine.objects.bulk_create(lines, batch_size=2000)  # PostgreSQL returns the ids
    _evidence_create(charges=charges, period_start=period_start, period_end=period_end)
    for invoice in invoices.values():
        invoice.total_minor = sum(line.amount_minor for line in lines if line.invoice is invoice)
        invoice.save(update_fields=["total_minor"])
    return list(invoices.values())


def _evidence_create(*, charges: list, period_start: datetime, period_end: datetime) -> None:
    """Each charge line's device-hours: billable seconds from the rating beside the rollup's samples
    (read through marketplace's metering selectors, one query for the period). Hours with usage but no
    billable time are kept too (billable 0): they show what was measured while the node was down."""
    usage: dict[tuple[int, int], dict] = defaultdict(dict)  # reservation id -> (device, hour) -> rollup row
    for row in reservations_usage_hours_between(reservation_ids=sorted({line.reservation_id for line, _ in charges}),
                                                start=period_start, end=period_end):
        usage[row.reservation_id][(row.device_id, int(row.hour.timestamp()))] = row
    rows = []
    for line, rating in charges:
        grid = rating.device_hour_seconds
        # a reservation with lines for several providers: each line takes the usage of its own devices
        devices = {device_id for device_id, _ in grid}
        measured = {key: row for key, row in usage.get(line.reservation_id, {}).items() if key[0] in devices}
        for device_id, hour in sorted(set(grid) | set(measured)):
            sample = measured.get((device_id, hour))
            rows.append(InvoiceLineEvidence(
                line=line, device_id=device_id, hour=datetime.fromtimestamp(hour, UTC),
                billable_seconds=grid.get((device_id, hour), 0),
                samples=sample.samples if sample else 0,
                busy_seconds=sample.busy_seconds if sample else None,
                utilization_mean=sample.utilization_mean if sample else None,
            ))
    InvoiceLineEvidence.objects.bulk_create(rows, batch_size=5000)


def billing_account_get(*, organization_id: int) -> BillingAccount:
    """The buyer's billing account, made on first use with the time zone of its first owner (the
    organization has no zone of its own; the months are the local months of whoever runs it)."""
    account = BillingAccount.objects.filter(organization_id=organization_id).first()
    if account is not None:
        return account
    owner = (Membership.objects.filter(organization_id=organization_id, role=Membership.Role.OWNER)
             .select_related("user").order_by("created_at", "pk").first())
    defaults = {"time_zone": owner.user.time_zone} if owner else {}
    account, _ = BillingAccount.objects.get_or_create(organization_id=organization_id, defaults=defaults)
    return account


def _is_due(account: BillingAccount | None, now: datetime) -> bool:
    """Whether a run has anything to do for this account: never run, left started by a crash, or a
    local month ended since its cursor."""
    if account is None or account.invoiced_through is None or account.invoicing_status != BillingAccount.InvoicingStatus.DONE:
        return True
    return next_local_month_start(instant=account.invoiced_through, time_zone=account.time_zone) <= now


def _months_due(account: BillingAccount, now: datetime) -> int:
    """How many whole local months from the cursor have ended by `now` (the run's progress total)."""
    count, start = 0, account.invoiced_through
    while start is not None and (end := next_local_month_start(instant=start, time_zone=account.time_zone)) <= now:
        count, start = count + 1, end
    return count


def billing_run_organization(*, organization_id: int, now: datetime | None = None, progress=None) -> list[int]:
    """Invoice every whole local month of the buyer that ended by `now` and is not invoiced yet.
    Returns the ids of the draft invoices created.

    Crash-safe and idempotent: each month is invoiced in ONE transaction that also moves the
    account's `invoiced_through` past it, under the account's row lock - a crash loses the month's
    transaction whole, so a rerun redoes exactly that month; a second run at the same time waits for
    the lock, then sees the moved cursor. PostgreSQL's `invoice_line_no_double_billing` is the last
    guard. `invoicing_status` is "started" while a run holds the account, so an account left started
    tells finance a run died there (the next run finishes it). `progress` (accounts.jobs.JobProgress,
    optional) is told the months done of the months due."""
    now = now or timezone.now()
    account = billing_account_get(organization_id=organization_id)
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        if account.invoiced_through is None:
            # First run: start at the local month of the first service instant (or this month: nothing before).
            first = reservation_segments_first_start(buyer_id=organization_id)
            account.invoiced_through = local_month_start(instant=first or now, time_zone=account.time_zone)
        account.invoicing_status = BillingAccount.InvoicingStatus.STARTED
        account.save(update_fields=["invoiced_through", "invoicing_status", "updated_at"])
    months_total = _months_due(account, now)
    months_done = 0
    created: list[int] = []
    while True:
        if progress is not None:
            # Between months, outside the month's transaction, so the page sees it at once.
            progress(done=months_done, total=months_total, message=f"Invoicing month {min(months_done + 1, months_total)} of {months_total}.",
                     force=True)
        with transaction.atomic():
            account = BillingAccount.objects.select_for_update().get(pk=account.pk)
            period = _next_period(account, now)
            if period is None:
                account.invoicing_status = BillingAccount.InvoicingStatus.DONE
                account.save(update_fields=["invoicing_status", "updated_at"])
                return created
            invoices = _build_period(organization_id=organization_id, period_start=period[0], period_end=period[1])
            created.extend(invoice.pk for invoice in invoices)
            account.invoiced_through = period[1]
            account.save(update_fields=["invoiced_through", "updated_at"])
        months_done += 1


def billing_run(*, now: datetime | None = None, organization_ids: list[int] | None = None, pause_seconds: float = 0.0,
                progress=None) -> int:
    """The billing run over all buyer organizations (or the given ones), one organization at a time,
    each crash-safe on its own (billing_run_organization). Returns the number of invoices created.
    `pause_seconds` spaces organizations out (a gentle run beside live traffic; the crash test uses it
    to kill a worker mid-run). `progress` (a JobProgress or a command's bar, optional) is told the
    organizations done."""
    now = now or timezone.now()
    if organization_ids is None:
        organization_ids = list(
            Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH]).order_by("pk").values_list("pk", flat=True)
        )
    # One read of every cursor, so the hourly run touches only the buyers whose month has ended.
    accounts = {a.organization_id: a for a in BillingAccount.objects.filter(organization_id__in=organization_ids)}
    created = 0
    failed = []
    for done, organization_id in enumerate(organization_ids):
        if progress is not None:
            progress(done=done, total=len(organization_ids), message=f"{created} invoice(s) so far")
        if not _is_due(accounts.get(organization_id), now):
            continue
        try:
            created += len(billing_run_organization(organization_id=organization_id, now=now))
        except DatabaseError:
            # One buyer whose month the database refuses (e.g. usage already on a live invoice) must not
            # hold up every other buyer: its month rolled back, its account stays "started" for finance,
            # and the run goes on; the failure is logged here and raised at the end.
            logger.exception("billing run: organization %s could not be invoiced", organization_id)
            failed.append(organization_id)
        if pause_seconds:
            time.sleep(pause_seconds)
    if progress is not None:
        progress(done=len(organization_ids), total=len(organization_ids), message=f"{created} invoice(s)")
    if failed:
        raise BillingRunIncomplete(organization_ids=failed, created=created)
    return created


# --- the invoice state machine -------------------------------------------------------------------------------------


def _number_next(*, kind: str, currency: str) -> int:
    """The next number of `kind` in `currency`, under the sequence's row lock (held to commit: gapless)."""
    NumberSequence.objects.get_or_create(kind=kind, currency=currency)
    sequence = NumberSequence.objects.select_for_update().get(kind=kind, currency=currency)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return sequence.last_number


@transaction.atomic
def invoice_set_status(*, invoice: Invoice, status: str, actor: User | None = None, reason: str = "") -> Invoice:
    """Move an invoice to `status`: locks the row, checks TRANSITIONS, writes the audit row, and does
    what the move means - approval numbers the invoice (gapless, per currency) and posts it to the
    ledger; voiding frees its usage for a new invoice and reverses its ledger entry if it had one.
    Setting the status it already has is a no-op (double clicks, retried tasks)."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status == status:
        return invoice
    if status not in Invoice.TRANSITIONS.get(invoice.status, frozenset()):
        raise InvoiceStateError(gettext("An invoice cannot go from %(from)s to %(to)s.")
                                % {"from": invoice.get_status_display(), "to": Invoice.Status(status).label})
    if status == Invoice.Status.VOID and invoice.payment_attempts.filter(status="pending").exists():
        # Stripe may be charging the card right now: voiding would leave that money without an invoice.
        raise InvoiceStateError(gettext("A payment of this invoice is in progress; void it once the payment has failed."))
    InvoiceStatusChange.objects.create(invoice=invoice, from_status=invoice.status, to_status=status, actor=actor, reason=reason[:500])
    changed = ["status"]
    if status == Invoice.Status.APPROVED:
        invoice.number = _number_next(kind="invoice", currency=invoice.currency)
        invoice.approved_at = timezone.now()
        changed += ["number", "approved_at"]
        _ledger_invoice_approved(invoice=invoice)
    if status == Invoice.Status.VOID:
        invoice.lines.update(is_void=True)
        if invoice.status in Invoice.ISSUED:
            _ledger_invoice_voided(invoice=invoice)
    invoice.status = status
    invoice.save(update_fields=changed)
    if status in (Invoice.Status.APPROVED, Invoice.Status.OPEN):
        invoice_issued_notify(invoice=invoice)  # in this transaction; emails leave on commit
    return invoice


def _review_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReviewReasonMissing(gettext("Say why: the reason is kept in the invoice's audit trail."))
    return reason


@transaction.atomic
def invoice_approve(*, invoice: Invoice, actor: User | None, reason: str) -> Invoice:
    """Finance approves an invoice under review (a draft goes through pending_review on the way, each
    step an audit row with the same reason): numbered and posted to the ledger by invoice_set_status.
    The reason is required - an approval nobody can explain later is not an approval."""
    reason = _review_reason(reason)
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status == Invoice.Status.DRAFT:
        invoice = invoice_set_status(invoice=invoice, status=Invoice.Status.PENDING_REVIEW, actor=actor, reason=reason)
    if invoice.status != Invoice.Status.PENDING_REVIEW:
        raise InvoiceStateError(gettext("Only a draft or an invoice pending review can be approved; this one is “%(status)s”.")
                                % {"status": invoice.get_status_display()})
    return invoice_set_status(invoice=invoice, status=Invoice.Status.APPROVED, actor=actor, reason=reason)


@transaction.atomic
def invoice_void(*, invoice: Invoice, actor: User | None, reason: str) -> Invoice:
    """Finance voids an invoice (an issued one's ledger entries are reversed by invoice_set_status).
    The reason is required. The billing run never comes back to a month its cursor has passed, so a
    plain void leaves that usage uninvoiced on purpose (usage that should never be billed);
    to bill it again, corrected, use invoice_redraft."""
    reason = _review_reason(reason)
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status == Invoice.Status.VOID:
        raise InvoiceStateError(gettext("This invoice is void already."))
    return invoice_set_status(invoice=invoice, status=Invoice.Status.VOID, actor=actor, reason=reason)


@transaction.atomic
def invoice_redraft(*, invoice: Invoice, actor: User | None, reason: str) -> Invoice | None:
    """Finance's "void and redraft": void the invoice and, in the same transaction, rebuild the same
    buyer, period and currency from today's segments and downtime as a new draft (None: nothing left to
    bill). One transaction, so the usage is never on no invoice and never on two (PostgreSQL's
    invoice_line_no_double_billing would refuse the second)."""
    invoice = invoice_void(invoice=invoice, actor=actor, reason=reason)
    drafts = _build_period(organization_id=invoice.buyer_id, period_start=invoice.period_start, period_end=invoice.period_end,
                           currency=invoice.currency, reason=f"redraft of void invoice {invoice.pk}: {reason.strip()}", actor=actor)
    return drafts[0] if drafts else None


@transaction.atomic
def credit_note_create(*, invoice: Invoice, amount_minor: int, reason: str, actor: User | None) -> CreditNote:
    """A correction of an issued invoice: numbered like invoices (own sequence), posted to the ledger."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
    if invoice.status not in Invoice.ISSUED:
        raise CreditNoteRefused(gettext("Only an approved, open, paid or uncollectible invoice takes a credit note; change a draft instead."))
    if not reason.strip():
        raise CreditNoteRefused(gettext("A credit note needs a reason."))
    if invoice.payment_attempts.filter(status="pending").exists():
        # Stripe may be charging the full total right now; the refund exists only for a paid invoice's
        # notes, so a note now would be charged and never paid back (invoice_set_status refuses a void alike).
        raise CreditNoteRefused(gettext("A payment of this invoice is in progress; issue the credit note once the payment has succeeded or failed."))
    credited = sum(note.amount_minor for note in invoice.credit_notes.all())
    if amount_minor <= 0 or credited + amount_minor > invoice.total_minor:
        raise CreditNoteRefused(gettext("A credit note must be more than 0 and at most %(money)s (what the invoice still carries).")
                                % {"money": format_money(invoice.total_minor - credited, invoice.currency)})
    note = CreditNote.objects.create(
        invoice=invoice, currency=invoice.currency, number=_number_next(kind="credit_note", currency=invoice.currency),
        amount_minor=amount_minor, reason=reason[:500], created_by=actor,
    )
    _journal_post(kind=JournalEntry.Kind.CREDIT_NOTE, invoice=invoice, credit_note=note, memo=f"{note.display_number}: {reason[:200]}",
                  postings=[(LedgerAccount.CREDITS_ISSUED, None, amount_minor),
                            (LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id, -amount_minor)],
                  currency=invoice.currency)
    if invoice.status == Invoice.Status.PAID:
        # The buyer already paid: the credit goes back to the card (billing.payments, after commit).
        from billing.tasks import refund_for_credit_note_task

        enqueue_after_commit(refund_for_credit_note_task, credit_note_id=note.pk)  # refunds_sweep re-drives a lost one
    return note


# --- the ledger ----------------------------------------------------------------------------------------------------


def _journal_post(*, kind: str, currency: str, postings: list[tuple[str, int | None, int]], invoice: Invoice | None = None,
                  credit_note: CreditNote | None = None, reverses: JournalEntry | None = None, memo: str = "",
                  payment=None, refund=None, payout=None) -> JournalEntry:
    """Write one journal entry. PostgreSQL refuses it at commit unless it sums to zero per currency.
    `payment`, `refund`, `payout`: the billing.payments row the entry books (Stripe money movements)."""
    entry = JournalEntry.objects.create(kind=kind, invoice=invoice, credit_note=credit_note, reverses=reverses, memo=memo,
                                        payment=payment, refund=refund, payout=payout)
    merged: dict[tuple[str, int | None], int] = defaultdict(int)
    for account, organization_id, amount in postings:
        merged[(account, organization_id)] += amount
    JournalPosting.objects.bulk_create([
        JournalPosting(entry=entry, account=account, organization_id=organization_id, currency=currency, amount_minor=amount)
        for (account, organization_id), amount in merged.items() if amount
    ])
    return entry


def _ledger_invoice_approved(*, invoice: Invoice) -> JournalEntry:
    """Debit the buyer's receivable (the total) and credits issued (the SLA credits); credit each
    provider's payable (its share of the charges) and platform fee revenue (the fee per charge line)."""
    postings: list[tuple[str, int | None, int]] = [(LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id, invoice.total_minor)]
    for line in invoice.lines.all():
        if line.kind == InvoiceLine.Kind.CHARGE:
            fee = platform_fee_minor(line.amount_minor)
            postings.append((LedgerAccount.PLATFORM_FEE_REVENUE, None, -fee))
            postings.append((LedgerAccount.PROVIDER_PAYABLES, line.provider_id, -(line.amount_minor - fee)))
        else:
            postings.append((LedgerAccount.CREDITS_ISSUED, None, -line.amount_minor))
    return _journal_post(kind=JournalEntry.Kind.INVOICE_APPROVED, invoice=invoice, currency=invoice.currency, postings=postings,
                         memo=f"invoice {invoice.display_number}")


def _ledger_invoice_voided(*, invoice: Invoice) -> None:
    """Reverse the invoice's approval entry (every posting negated) - the ledger is never edited."""
    for entry in invoice.journal_entries.filter(kind=JournalEntry.Kind.INVOICE_APPROVED, reversed_by__isnull=True):
        _journal_post(kind=JournalEntry.Kind.INVOICE_VOIDED, invoice=invoice, currency=invoice.currency, reverses=entry,
                      postings=[(p.account, p.organization_id, -p.amount_minor) for p in entry.postings.all()],
                      memo=f"void of invoice {invoice.display_number}")
    # Credit notes of a voided invoice are reversed too, so its receivable ends at zero.
    for note in invoice.credit_notes.all():
        for entry in note.journal_entries.filter(reversed_by__isnull=True):
            _journal_post(kind=JournalEntry.Kind.INVOICE_VOIDED, invoice=invoice, currency=invoice.currency, reverses=entry,
                          postings=[(p.account, p.organization_id, -p.amount_minor) for p in entry.postings.all()],
                          memo=f"void of invoice {invoice.display_number}: {note.display_number} reversed")


def ledger_reconcile() -> list[str]:
    """Differences between the ledger and the documents, as sentences (empty: all reconciles).

    Checks: every currency's ledger sums to zero; each invoice's total is the sum of its lines; for
    each issued invoice (void ones: everything back to zero) the ledger holds, under that invoice,
    the buyer's receivable = total - credit notes, each provider's payable = its charges less the fee,
    the fee revenue, and the credits issued = SLA credits + credit notes; with the money movements of
    billing.payments: the receivable less what was collected plus what was refunded, Stripe clearing =
    collected - refunded - payouts in transit or paid, each provider's payable less its live payouts."""
    from django.db.models import Sum

    from billing.models import PaymentAttempt, Payout, Refund

    collected = dict(PaymentAttempt.objects.filter(status=PaymentAttempt.Status.SUCCEEDED).values_list("invoice_id")
                     .annotate(total=Sum("amount_minor")).order_by())
    refunded = dict(Refund.objects.filter(status=Refund.Status.SUCCEEDED).values_list("payment__invoice_id")
                    .annotate(total=Sum("amount_minor")).order_by())
    paid_out: dict[int, dict[int, int]] = defaultdict(dict)
    for invoice_id, provider_id, total in (Payout.objects.filter(status__in=[Payout.Status.IN_TRANSIT, Payout.Status.PAID])
                                           .values_list("invoice_id", "provider_id").annotate(total=Sum("amount_minor")).order_by()):
        paid_out[invoice_id][provider_id] = total

    problems = []
    for row in JournalPosting.objects.values("currency").annotate(total=Sum("amount_minor")).order_by("currency"):
        if row["total"] != 0:
            problems.append(f"ledger in {row['currency']} sums to {row['total']}, not 0")
    posted: dict[int, dict[tuple[str, int | None], int]] = defaultdict(lambda: defaultdict(int))
    for invoice_id, account, organization_id, total in (
        JournalPosting.objects.filter(entry__invoice__isnull=False)
        .values_list("entry__invoice", "account", "organization").annotate(total=Sum("amount_minor")).order_by()
    ):
        posted[invoice_id][(account, organization_id)] += total
    for invoice in Invoice.objects.order_by("pk").prefetch_related("lines", "credit_notes"):
        lines = list(invoice.lines.all())
        if invoice.total_minor != sum(line.amount_minor for line in lines):
            problems.append(f"invoice {invoice.display_number}: total {invoice.total_minor}, its lines sum to "
                            f"{sum(line.amount_minor for line in lines)}")
        expected: dict[tuple[str, int | None], int] = defaultdict(int)
        if invoice.status in Invoice.ISSUED:
            credited = sum(note.amount_minor for note in invoice.credit_notes.all())
            expected[(LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id)] = invoice.total_minor - credited
            expected[(LedgerAccount.CREDITS_ISSUED, None)] = credited
            for line in lines:
                if line.kind == InvoiceLine.Kind.CHARGE:
                    fee = platform_fee_minor(line.amount_minor)
                    expected[(LedgerAccount.PLATFORM_FEE_REVENUE, None)] -= fee
                    expected[(LedgerAccount.PROVIDER_PAYABLES, line.provider_id)] -= line.amount_minor - fee
                else:
                    expected[(LedgerAccount.CREDITS_ISSUED, None)] -= line.amount_minor
        money_in = collected.get(invoice.pk, 0) - refunded.get(invoice.pk, 0)
        expected[(LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id)] -= money_in
        expected[(LedgerAccount.STRIPE_CLEARING, None)] += money_in
        for provider_id, amount in paid_out.get(invoice.pk, {}).items():
            expected[(LedgerAccount.PROVIDER_PAYABLES, provider_id)] += amount
            expected[(LedgerAccount.STRIPE_CLEARING, None)] -= amount
        actual = posted.get(invoice.pk, {})
        for key in sorted(set(expected) | set(actual), key=str):
            if expected.get(key, 0) != actual.get(key, 0):
                account, organization_id = key
                whose = f" of organization {organization_id}" if organization_id else ""
                problems.append(f"invoice {invoice.display_number}: {account}{whose} is {actual.get(key, 0)} in the ledger, "
                                f"{expected.get(key, 0)} by the documents")
    return problems


def billing_usage_drift() -> list[str]:
    """Charge lines whose usage changed after they were invoiced, as sentences (empty: none).

    A segment can be closed or written after its month was invoiced (an agent that reports late, a
    move observed late): the line then no longer matches its segments. Each charge line of a live
    invoice is re-rated from today's segments and downtime; a difference is for finance to correct
    (a credit note, or a void and a new draft) - the run never rewrites an invoiced month."""
    lines = list(InvoiceLine.objects.filter(kind=InvoiceLine.Kind.CHARGE, is_void=False).select_related("invoice").order_by("pk"))
    if not lines:
        return []
    reservation_ids = sorted({line.reservation_id for line in lines})
    spans: dict[tuple[int, int], list] = defaultdict(list)
    statuses = {}
    for segment in reservations_segments(reservation_ids=reservation_ids):
        statuses[segment.reservation_id] = segment.reservation.status
        spans[(segment.reservation_id, segment.provider_id)].append(Span(
            node_id=segment.node_id, device_ids=tuple(segment.device_ids), started_at=segment.started_at,
            ended_at=segment.ended_at, price_per_card_hour_minor=segment.price_per_card_hour_minor))
    first = min(line.period_start for line in lines)
    last = max(line.period_end for line in lines)
    downtimes = reservation_downtimes(reservation_ids=reservation_ids, start=first, end=last)
    policy = sla_policy()
    problems = []
    for line in lines:
        rating = rate_reservation(status=statuses.get(line.reservation_id, ""), spans=spans.get((line.reservation_id, line.provider_id), []),
                                  downtimes=downtimes.get(line.reservation_id, []), period_start=line.period_start,
                                  period_end=line.period_end, policy=policy)
        if (rating.card_seconds, rating.charge_minor) != (line.card_seconds, line.amount_minor):
            problems.append(
                f"invoice {line.invoice.display_number}, reservation {line.reservation_id}: invoiced {line.card_seconds} card-seconds "
                f"({line.amount_minor}), its segments now say {rating.card_seconds} ({rating.charge_minor})")
    return problems


# --- the billing run and the CSV export as jobs (accounts.jobs), started by finance staff from /finance/runs/


def billing_run_job_start(*, organization_id: int, actor: User):
    """Queue the on-demand billing run of one buyer organization (billing_run_organization) as a job.
    A platform job (no organization): only the finance staff member who started it sees it."""
    from accounts.jobs import job_start
    from accounts.models import Job

    Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH]).get(pk=organization_id)
    return job_start(owner=actor, organization=None, kind=Job.Kind.BILLING_RUN, params={"organization_id": organization_id})


def billing_run_job_run(*, job_id: int) -> str:
    from accounts.jobs import JobOutcome, job_run

    def work(job, progress):
        invoice_ids = billing_run_organization(organization_id=job.params["organization_id"], progress=progress)
        count = len(invoice_ids)
        return JobOutcome(
            message=f"{count} draft invoice{'' if count == 1 else 's'} created." if count else "Nothing was due: no invoice created.",
            result={"invoice_ids": invoice_ids}, link="/finance/",
        )

    return job_run(job_id=job_id, work=work)


def invoice_export_job_start(*, actor: User):
    """Queue the finance CSV export (billing.selectors.invoice_export_rows) as a job with a file."""
    from accounts.jobs import job_start
    from accounts.models import Job

    return job_start(owner=actor, organization=None, kind=Job.Kind.INVOICE_EXPORT)


def invoice_export_csv(*, progress=None) -> bytes:
    """The finance CSV export as bytes (UTF-8, the csv module's default dialect, as the page served it)."""
    import csv
    import io

    from billing.selectors import invoice_export_rows

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in invoice_export_rows(progress=progress):
        writer.writerow(row)
    return buffer.getvalue().encode()


def invoice_export_job_run(*, job_id: int) -> str:
    from accounts.jobs import JobOutcome, job_run

    def work(job, progress):
        data = invoice_export_csv(progress=progress)
        return JobOutcome(
            message=f"{progress.total:,} invoice{'' if progress.total == 1 else 's'} exported.",
            result={"invoices": progress.total, "bytes": len(data)},
            file=data, filename=f"invoices-{job.created_at:%Y%m%d-%H%M}.csv", content_type="text/csv; charset=utf-8",
        )

    return job_run(job_id=job_id, work=work)
