"""Reads of billing (and what billing reads from marketplace)."""

from collections import defaultdict
from datetime import datetime

from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.shortcuts import get_object_or_404

from accounts.models import Membership, Organization
from billing.models import (
    BillingAccount,
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceLineEvidence,
    JournalPosting,
    LedgerAccount,
    PaymentAttempt,
    Payout,
)
from billing.rating import Downtime, Span, rate_reservation
from inventory.pricing import price_minor_to_major
from marketplace.models import ReservationSegment
from marketplace.selectors import reservation_downtimes_between, reservation_segments_of_buyer_between


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
    rows = JournalPosting.objects.values("account", "currency").annotate(balance=Sum("amount_minor"))
    return {(row["account"], row["currency"]): row["balance"] for row in rows}


# --- the finance, buyer and provider pages -------------------------------------------------------------------------

# Invoices finance still has to look at: the run's drafts and those sent for review.
REVIEW_STATUSES = ("draft", "pending_review")
# Owed and not yet settled: what receivables aging counts (uncollectible is written off, paid is settled).
OUTSTANDING_STATUSES = ("approved", "open")
# What a buyer can pay: issued and not settled (an approved invoice is sent for collection by its payment).
PAYABLE_STATUSES = ("approved", "open", "uncollectible")
AGING_BUCKETS = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))


def invoice_review_queue() -> QuerySet[Invoice]:
    """Drafts and invoices pending review, oldest period first (the order finance works them off)."""
    return (Invoice.objects.filter(status__in=REVIEW_STATUSES).select_related("buyer")
            .annotate(line_count=Count("lines")).order_by("period_start", "buyer__name", "currency", "id"))


def _served_where(path: str) -> Subquery:
    """`path` (from a segment's node) of the hardware that served a line: the first service segment of
    the line's reservation on the line's provider. A reservation moved to another provider's cards has
    a line per provider, so each line names that provider's site, not the one it was booked on; a move
    between two sites of the same provider names the first."""
    return Subquery(ReservationSegment.objects.filter(reservation_id=OuterRef("reservation_id"), provider_id=OuterRef("provider_id"))
                    .order_by("started_at", "pk").values(path)[:1])


def _with_served_where(lines: QuerySet[InvoiceLine]) -> QuerySet[InvoiceLine]:
    return lines.annotate(served_site=_served_where("node__cluster__site__name"), served_model=_served_where("node__accelerator_model__name"),
                          served_hub=_served_where("node__cluster__site__province__hub__name"))


def invoice_line_get(*, invoice: Invoice, line_id: int) -> InvoiceLine:
    """One line of an invoice the caller already scoped (404 for a line of another invoice)."""
    return get_object_or_404(_with_served_where(InvoiceLine.objects.select_related("provider")), invoice=invoice, pk=line_id)


def invoice_lines_with_context(*, invoice: Invoice) -> QuerySet[InvoiceLine]:
    """The lines of an invoice with what the pages show beside each (the accelerator model and site that
    served it) and its device-hour count."""
    return (_with_served_where(InvoiceLine.objects.filter(invoice=invoice).select_related("provider"))
            .annotate(evidence_hours=Count("evidence")).order_by("reservation_id", "provider_id", "kind"))


def invoice_outstanding_minor(*, invoice: Invoice) -> int:
    """What the invoice asks of the buyer: its total less its credit notes. A payment settles all of it at
    once (the invoice is then paid; pages show the status, not a remainder)."""
    return invoice.total_minor - sum(note.amount_minor for note in invoice.credit_notes.all())


def receivables_aging(*, now: datetime) -> dict[str, dict[str, int]]:
    """Outstanding amounts of approved and open invoices by age, per currency: {currency: {bucket: minor}}.
    Age = whole days since approval (the day the invoice was issued), in the buckets 0-30, 31-60, 61-90, 90+."""
    aging: dict[str, dict[str, int]] = {}
    invoices = Invoice.objects.filter(status__in=OUTSTANDING_STATUSES).prefetch_related("credit_notes").order_by("currency", "id")
    for invoice in invoices:
        days = (now - (invoice.approved_at or invoice.period_end)).days
        buckets = aging.setdefault(invoice.currency, {name: 0 for name, _, _ in AGING_BUCKETS})
        for name, low, high in AGING_BUCKETS:
            if days >= low and (high is None or days <= high):
                buckets[name] += invoice_outstanding_minor(invoice=invoice)
                break
        else:  # approved "in the future" (clock skew): the youngest bucket
            buckets[AGING_BUCKETS[0][0]] += invoice_outstanding_minor(invoice=invoice)
    return aging


# Revenue groupings: the label of a line's provider, or of the accelerator model or national hub (via its
# site's province) of the hardware that served it (_served_where).
REVENUE_DIMENSIONS = {"provider": "provider__name", "model": "served_model", "hub": "served_hub"}
# A hub is shown by its Chinese name on a Chinese page (locale/GLOSSARY.md): the row carries both.
REVENUE_LABELS_ZH = {"hub": "served_hub_zh"}


def revenue_by(*, dimension: str) -> list[dict]:
    """Billed revenue from the lines of issued invoices (approved, open, paid, uncollectible), grouped by
    `dimension` and currency: charges, SLA credits and the net (charges + credits), in minor units.
    Credit notes are per invoice, not per line, so they are not split here (the aging shows them)."""
    field = REVENUE_DIMENSIONS[dimension]
    field_zh = REVENUE_LABELS_ZH.get(dimension, field)
    rows = (_with_served_where(InvoiceLine.objects.filter(invoice__status__in=Invoice.ISSUED))
            .annotate(served_hub_zh=_served_where("node__cluster__site__province__hub__name_zh"))
            .values(*dict.fromkeys([field, field_zh]), "invoice__currency")
            .annotate(charges=Sum("amount_minor", filter=Q(kind=InvoiceLine.Kind.CHARGE), default=0),
                      credits=Sum("amount_minor", filter=Q(kind=InvoiceLine.Kind.SLA_CREDIT), default=0),
                      card_seconds=Sum("card_seconds", filter=Q(kind=InvoiceLine.Kind.CHARGE), default=0))
            .order_by("invoice__currency", field))
    return [{"label": row[field] or "(none)", "label_zh": row[field_zh] or row[field] or "(none)",
             "currency": row["invoice__currency"], "charges_minor": row["charges"],
             "credits_minor": row["credits"], "net_minor": row["charges"] + row["credits"],
             "card_hours": row["card_seconds"] / 3600} for row in rows]


def invoice_export_rows(*, progress=None) -> list[list]:
    """The CSV export: one row per invoice (all statuses), oldest first, amounts in minor units and in
    the major unit as text (so a spreadsheet never rounds them). `progress` (accounts.jobs.JobProgress,
    optional) is told the invoices done of the invoices to export."""
    # Column keys and status values stay English in every language: the file is machine readable
    # (spreadsheets and importers look columns up by name), like the API's enum values.
    header = ["number", "id", "status", "buyer", "currency", "period_start_utc", "period_end_utc", "total_minor", "total",
              "credited_minor", "outstanding_minor", "approved_at_utc", "lines"]
    rows: list[list] = [header]
    invoices = Invoice.objects.select_related("buyer").prefetch_related("credit_notes").annotate(line_count=Count("lines")).order_by("id")
    total = invoices.count() if progress is not None else 0
    for done, invoice in enumerate(invoices):
        if progress is not None:
            progress(done=done, total=total, message=f"Exporting invoices ({done:,} of {total:,}).")
        credited = sum(note.amount_minor for note in invoice.credit_notes.all())
        rows.append([invoice.display_number, invoice.pk, invoice.status, invoice.buyer.name, invoice.currency,
                     invoice.period_start.isoformat(), invoice.period_end.isoformat(), invoice.total_minor,
                     f"{price_minor_to_major(invoice.total_minor):.2f}", credited, invoice.total_minor - credited,
                     invoice.approved_at.isoformat() if invoice.approved_at else "", invoice.line_count])
    return rows


def evidence_billable_seconds(*, evidence: QuerySet[InvoiceLineEvidence]) -> int:
    return evidence.aggregate(total=Sum("billable_seconds", default=0))["total"]


def billing_time_zone(*, organization_id: int) -> str:
    """The zone the buyer's months are billed in: its billing account's, or - before the first run
    made one - the zone billing_account_get will give it (its first owner's), without creating it."""
    account = BillingAccount.objects.filter(organization_id=organization_id).first()
    if account is not None:
        return account.time_zone
    owner = (Membership.objects.filter(organization_id=organization_id, role=Membership.Role.OWNER)
             .select_related("user").order_by("created_at", "pk").first())
    return owner.user.time_zone if owner else BillingAccount._meta.get_field("time_zone").default


def buyer_spend_between(*, organization_id: int, start: datetime, end: datetime) -> dict[str, int]:
    """What the buyer's service in [start, end) costs so far, per currency, by billing's own rating
    (segments, downtime, the price locked at booking, one rounding per reservation and provider) -
    the figure the next invoice will show for that time, before review."""
    from billing.services import sla_policy  # services import this module: read it at call time

    groups: dict[tuple[int, int], list] = defaultdict(list)
    reservations = {}
    for segment in reservation_segments_of_buyer_between(buyer_id=organization_id, start=start, end=end):
        groups[(segment.reservation_id, segment.provider_id)].append(segment)
        reservations[segment.reservation_id] = segment.reservation
    downtimes = reservation_downtimes(reservation_ids=list(reservations), start=start, end=end)
    spend: dict[str, int] = defaultdict(int)
    for (reservation_id, _), segments in sorted(groups.items()):
        reservation = reservations[reservation_id]
        rating = rate_reservation(
            status=reservation.status,
            spans=[Span(node_id=s.node_id, device_ids=tuple(s.device_ids), started_at=s.started_at, ended_at=s.ended_at,
                        price_per_card_hour_minor=s.price_per_card_hour_minor) for s in segments],
            downtimes=downtimes.get(reservation_id, []), period_start=start, period_end=end, policy=sla_policy(),
        )
        spend[reservation.currency] += rating.charge_minor - rating.sla_credit_minor
    return dict(sorted(spend.items()))


def provider_earnings(*, provider: Organization) -> list[dict]:
    """The provider's earnings from the charge lines of issued invoices, by site and accelerator model and
    currency: billed, the platform fee (per line, by the same rule as the ledger) and the provider's share.
    SLA credits are borne by the platform (credits_issued), so they do not reduce the provider's share."""
    from billing.services import platform_fee_minor  # services import this module: read it at call time

    totals: dict[tuple, dict] = {}
    lines = (_with_served_where(InvoiceLine.objects.filter(provider=provider, kind=InvoiceLine.Kind.CHARGE, invoice__status__in=Invoice.ISSUED))
             .values_list("served_site", "served_model", "invoice__currency", "amount_minor", "card_seconds")
             .order_by("served_site", "served_model", "invoice__currency"))
    for site, model, currency, amount, card_seconds in lines:
        row = totals.setdefault((site, model, currency), {"site": site, "model": model, "currency": currency, "billed_minor": 0,
                                                          "fee_minor": 0, "share_minor": 0, "card_seconds": 0})
        fee = platform_fee_minor(amount)
        row["billed_minor"] += amount
        row["fee_minor"] += fee
        row["share_minor"] += amount - fee
        row["card_seconds"] += card_seconds
    return list(totals.values())


def provider_payable_balances(*, provider: Organization) -> dict[str, int]:
    """What the platform owes the provider per currency, from the ledger (provider_payables is a credit
    balance, shown positive): accrued from approved invoices, less reversals and payouts sent (in transit
    or paid; a failed payout's reversal owes it again)."""
    rows = (JournalPosting.objects.filter(account=LedgerAccount.PROVIDER_PAYABLES, organization=provider)
            .values("currency").annotate(balance=Sum("amount_minor")).order_by("currency"))
    return {row["currency"]: -row["balance"] for row in rows}


def payment_attempt_list(*, organization: Organization | None, viewer_is_finance: bool = False,
                         invoice_id: int | None = None) -> QuerySet[PaymentAttempt]:
    """Collection attempts on the invoices the viewer may read (invoice_list's rule), newest first."""
    qs = PaymentAttempt.objects.filter(
        invoice__in=invoice_list(organization=organization, viewer_is_finance=viewer_is_finance).values("pk")
    ).order_by("-created_at", "-id")
    return qs if invoice_id is None else qs.filter(invoice_id=invoice_id)


def payout_list(*, organization: Organization | None) -> QuerySet[Payout]:
    """Payouts to the provider organization, newest first; None: all (the caller checked finance staff)."""
    qs = Payout.objects.select_related("invoice", "provider").order_by("-created_at", "-id")
    return qs if organization is None else qs.filter(provider=organization)


def payout_totals(*, organization: Organization | None) -> dict[str, dict[str, int]]:
    """Payout amounts per currency and status ({currency: {status: minor}}, every status present), of
    one provider or (None) of all - the finance payouts page's and the earnings page's summary."""
    qs = Payout.objects.all() if organization is None else Payout.objects.filter(provider=organization)
    totals: dict[str, dict[str, int]] = {}
    for row in qs.values("currency", "status").annotate(total=Sum("amount_minor")).order_by("currency"):
        totals.setdefault(row["currency"], dict.fromkeys(Payout.Status.values, 0))[row["status"]] = row["total"]
    return totals


def provider_earnings_summary(*, provider: Organization) -> list[dict]:
    """Per currency: accrued and not yet sent (the ledger's provider payable: credited at approval,
    debited when a payout goes in transit, credited again if it fails), in transit and paid (payouts)."""
    payables = provider_payable_balances(provider=provider)
    payouts = payout_totals(organization=provider)
    return [{"currency": currency, "accrued_minor": payables.get(currency, 0),
             "in_transit_minor": payouts.get(currency, {}).get(Payout.Status.IN_TRANSIT, 0),
             "paid_minor": payouts.get(currency, {}).get(Payout.Status.PAID, 0)}
            for currency in sorted(set(payables) | set(payouts))]


def billing_profile_of(*, organization: Organization) -> BillingProfile | None:
    return BillingProfile.objects.filter(organization=organization).first()


def invoices_payable(*, organization: Organization) -> QuerySet[Invoice]:
    """The buyer's invoices it can pay now (issued and unpaid: approved, open or uncollectible), oldest first,
    each with `payment_error_code`: Stripe's code of its newest failed attempt (what payment_error says, as a
    code the page translates: billing.declines)."""
    last_failed = (PaymentAttempt.objects.filter(invoice=OuterRef("pk"), status=PaymentAttempt.Status.FAILED)
                   .order_by("-attempt").values("decline_code")[:1])
    return (Invoice.objects.filter(buyer=organization, status__in=PAYABLE_STATUSES)
            .annotate(payment_error_code=Subquery(last_failed)).order_by("period_start", "pk"))


def billing_run_buyer_list() -> QuerySet[Organization]:
    """The organizations finance may run billing for (buyers), by name."""
    return Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH]).order_by("name", "pk")
