"""Reads of billing (and what billing reads from marketplace)."""

from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Organization
from billing.models import (
    BillingAccount,
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceLineEvidence,
    JournalPosting,
    PaymentAttempt,
    Payout,
)
from billing.rating import Downtime


def reservation_downtimes(*, reservation_ids: list[int], start: datetime, end: datetime) -> dict[int, list[Downtime]]:
    """Recorded downtime of the reservations overlapping [start, end), per reservation id.

    # wired on merge: marketplace's ReservationDowntime (reservation, node, started_at, ended_at) is
    # being added by the Operations work; until it lands there is no downtime to read, so this returns
    # no intervals. The rating and SLA credit logic take the intervals as input and are tested with
    # explicit ones (tests/billing/test_rating.py). After the merge: filter ReservationDowntime by
    # reservation_id__in, started_at < end and (ended_at NULL or > start), through marketplace's selectors.
    """
    return {}


def invoice_list(*, organization: Organization | None, viewer_is_finance: bool = False) -> QuerySet[Invoice]:
    """Invoices, newest period first, with what the API shows per row read in fixed queries.
    organization None: every organization's (only for finance staff, `viewer_is_finance`); a buyer's
    members see only issued invoices (numbered at approval: drafts are finance's work in progress)."""
    qs = Invoice.objects.select_related("buyer").prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.select_related("provider")), "credit_notes"
    ).order_by("-period_start", "currency", "-id")
    if organization is None:
        return qs if viewer_is_finance else qs.none()
    qs = qs.filter(buyer=organization)
    return qs if viewer_is_finance else qs.filter(number__isnull=False)


def invoice_get(*, organization: Organization | None, viewer_is_finance: bool, invoice_id: int) -> Invoice:
    """One invoice the viewer may read; 404 for anyone else's (no hint that it exists)."""
    return get_object_or_404(invoice_list(organization=organization, viewer_is_finance=viewer_is_finance), pk=invoice_id)


def invoice_evidence_list(*, organization: Organization | None, viewer_is_finance: bool, invoice_id: int | None = None,
                          line_id: int | None = None) -> QuerySet[InvoiceLineEvidence]:
    """The device-hours behind the charge lines of the invoices the viewer may read (invoice_list's rule),
    optionally of one invoice or one line, by hour and device."""
    qs = InvoiceLineEvidence.objects.filter(
        line__invoice__in=invoice_list(organization=organization, viewer_is_finance=viewer_is_finance).values("pk")
    ).order_by("line_id", "hour", "device_id")
    if invoice_id is not None:
        qs = qs.filter(line__invoice_id=invoice_id)
    if line_id is not None:
        qs = qs.filter(line_id=line_id)
    return qs


def credit_note_list(*, organization: Organization | None) -> QuerySet[CreditNote]:
    """Credit notes, newest first; organization None: all (the caller checked the viewer is finance staff)."""
    qs = CreditNote.objects.order_by("-created_at", "-id")
    return qs if organization is None else qs.filter(invoice__buyer=organization)


def billing_account_list() -> "list[BillingAccount]":
    return BillingAccount.objects.select_related("organization")


def ledger_balances() -> dict[tuple[str, str], int]:
    """(account, currency) -> balance (debits positive), over the whole ledger."""
    from django.db.models import Sum

    rows = JournalPosting.objects.values("account", "currency").annotate(balance=Sum("amount_minor"))
    return {(row["account"], row["currency"]): row["balance"] for row in rows}


def payment_attempt_list(*, organization: Organization | None, viewer_is_finance: bool = False,
                         invoice_id: int | None = None) -> QuerySet[PaymentAttempt]:
    """Collection attempts on the invoices the viewer may read (invoice_list's rule), newest first."""
    qs = PaymentAttempt.objects.filter(
        invoice__in=invoice_list(organization=organization, viewer_is_finance=viewer_is_finance).values("pk")
    ).order_by("-created_at", "-id")
    return qs if invoice_id is None else qs.filter(invoice_id=invoice_id)


def payout_list(*, organization: Organization | None) -> QuerySet[Payout]:
    """Payouts to the provider organization, newest first; None: all (the caller checked finance staff)."""
    qs = Payout.objects.select_related("invoice").order_by("-created_at", "-id")
    return qs if organization is None else qs.filter(provider=organization)


def billing_profile_of(*, organization: Organization) -> BillingProfile | None:
    return BillingProfile.objects.filter(organization=organization).first()


def invoices_payable(*, organization: Organization) -> QuerySet[Invoice]:
    """The buyer's invoices it can pay now (open or uncollectible), oldest first."""
    return Invoice.objects.filter(buyer=organization, status__in=[Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE]).order_by(
        "period_start", "pk")
