"""Reads of billing (and what billing reads from marketplace)."""

from datetime import datetime

from billing.models import BillingAccount, Invoice, JournalPosting
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


def invoice_list(*, organization=None) -> "list[Invoice]":
    qs = Invoice.objects.select_related("buyer").prefetch_related("lines")
    return qs.filter(buyer=organization) if organization is not None else qs


def billing_account_list() -> "list[BillingAccount]":
    return BillingAccount.objects.select_related("organization")


def ledger_balances() -> dict[tuple[str, str], int]:
    """(account, currency) -> balance (debits positive), over the whole ledger."""
    from django.db.models import Sum

    rows = JournalPosting.objects.values("account", "currency").annotate(balance=Sum("amount_minor"))
    return {(row["account"], row["currency"]): row["balance"] for row in rows}
