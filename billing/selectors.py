"""Reads of billing (and what billing reads from marketplace)."""

from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Organization
from billing.models import BillingAccount, CreditNote, Invoice, InvoiceLine, InvoiceLineEvidence, JournalPosting
from billing.rating import Downtime
from marketplace.selectors import reservation_downtimes_between


def reservation_downtimes(*, reservation_ids: list[int], start: datetime, end: datetime) -> dict[int, list[Downtime]]:
    """Recorded downtime of the reservations overlapping [start, end), per reservation id (marketplace's
    ReservationDowntime, written by failover: from the failed node's last heartbeat until served again)."""
    downtimes: dict[int, list[Downtime]] = {}
    for record in reservation_downtimes_between(reservation_ids=reservation_ids, start=start, end=end):
        downtimes.setdefault(record.reservation_id, []).append(
            Downtime(node_id=record.node_id, started_at=record.started_at, ended_at=record.ended_at)
        )
    return downtimes


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
