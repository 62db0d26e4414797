"""Property (hypothesis): for random usage, prices, downtime, run times and credit notes, every invoice
total is the sum of its lines, no second is billed twice across runs and none is lost, and the ledger
sums to zero (and reconciles) after invoicing, credit notes and voids.

Payments, refunds and payouts are not built yet (Stripe is a later step): they join this property then.
"""

from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing.services
from billing.models import BillingAccount, Invoice, InvoiceLine, JournalPosting
from billing.rating import Downtime, Span, rate_reservation
from billing.selectors import reservation_downtimes
from billing.services import billing_run, credit_note_create, invoice_set_status, ledger_reconcile, sla_policy
from marketplace.models import ReservationDowntime
from tests.billing.conftest import MARCH, served
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db
SPAN = 75 * 24 * 3600  # usage falls in March, April and the first half of May (Shanghai months)


def at(seconds: int) -> datetime:
    return MARCH + timedelta(seconds=seconds)


@st.composite
def reservations(draw):
    cuts = sorted(draw(st.lists(st.integers(0, SPAN), min_size=2, max_size=6, unique=True)))
    cuts = cuts[: len(cuts) // 2 * 2]
    periods = [(at(a), at(b)) for a, b in zip(cuts[::2], cuts[1::2], strict=True)]
    if draw(st.booleans()):
        periods[-1] = (periods[-1][0], None)  # still running
    downtime = []
    for _ in range(draw(st.integers(0, 2))):
        a, b = sorted(draw(st.lists(st.integers(0, SPAN), min_size=2, max_size=2)))
        downtime.append((at(a), at(b) if b > a else None))
    return {
        "periods": periods, "downtime": downtime, "cards": draw(st.integers(1, 8)), "price": draw(st.integers(0, 5_000_000)),
        "usd": draw(st.booleans()), "status": draw(st.sampled_from(["completed", "completed", "active", "failed", "cancelled"])),
        "node": draw(st.integers(0, 1)),
    }


scenarios = st.fixed_dictionaries({
    "buyers": st.lists(st.lists(reservations(), min_size=1, max_size=3), min_size=1, max_size=3),
    "runs": st.lists(st.integers(0, SPAN + 40 * 24 * 3600), min_size=1, max_size=4).map(sorted),
    "credit_fractions": st.lists(st.fractions(0, 1), min_size=0, max_size=4),
    "void_every": st.integers(2, 5),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios)
def test_invoices_add_up_no_second_is_billed_twice_and_the_ledger_balances(offer, usd_offer, scenario):
    with transaction.atomic():
        _check(offer, usd_offer, scenario)
        transaction.set_rollback(True)  # each example starts from the same empty books


def _check(offer, usd_offer, scenario):
    downtime_of: dict[int, list[Downtime]] = {}
    buyers, made = [], []
    for spec in scenario["buyers"]:
        buyer = OrganizationFactory()
        buyers.append(buyer)
        for r in spec:
            target = usd_offer if r["usd"] else offer
            reservation = served(buyer=buyer, offer=target, periods=r["periods"], cards=r["cards"], price=r["price"], status=r["status"],
                                 node_index=r["node"] % target.cluster.nodes.count())
            node_id = reservation.segments.first().node_id
            # Operations' records, as failover writes them (one per failure instant); the run reads them
            # through billing.selectors.reservation_downtimes.
            for a, b in {a: b for a, b in r["downtime"]}.items():
                ReservationDowntime.objects.create(reservation=reservation, node_id=node_id, started_at=a, ended_at=b, cause="host_fault")
            downtime_of[reservation.pk] = [Downtime(node_id=d.node_id, started_at=d.started_at, ended_at=d.ended_at)
                                           for d in reservation.downtimes.all()]
            made.append(reservation)
    ids = [b.pk for b in buyers]
    # What billing reads is what was recorded
    read = reservation_downtimes(reservation_ids=[r.pk for r in made], start=at(0) - timedelta(days=1), end=at(SPAN + 1))
    assert {rid: sorted(ds, key=lambda d: d.started_at) for rid, ds in read.items()} == {
        rid: sorted(ds, key=lambda d: d.started_at) for rid, ds in downtime_of.items() if ds}
    # When the run goes several times, at increasing instants
    for offset in scenario["runs"]:
        billing_run(organization_ids=ids, now=at(offset))
    # Then every invoice's total is the sum of its lines
    for invoice in Invoice.objects.filter(buyer_id__in=ids).prefetch_related("lines"):
        assert invoice.total_minor == sum(line.amount_minor for line in invoice.lines.all())
    # And each reservation's charge lines cover disjoint periods whose seconds add up to a rating of all
    # invoiced time at once (nothing twice, nothing lost)
    for reservation in made:
        through = BillingAccount.objects.get(organization_id=reservation.buyer_id).invoiced_through
        lines = list(InvoiceLine.objects.filter(reservation=reservation, kind="charge").order_by("period_start"))
        for before, after in zip(lines, lines[1:], strict=False):
            assert before.period_end <= after.period_start
        first = min(s.started_at for s in reservation.segments.all())
        whole = rate_reservation(
            status=reservation.status, spans=[Span(s.node_id, tuple(s.device_ids), s.started_at, s.ended_at, s.price_per_card_hour_minor)
                                              for s in reservation.segments.all()],
            downtimes=downtime_of[reservation.pk], period_start=first - timedelta(days=40), period_end=through, policy=sla_policy(),
        ) if through and through > first - timedelta(days=40) else None
        assert sum(line.card_seconds for line in lines) == (whole.card_seconds if whole else 0)
    # When finance approves every draft, credits some, voids some
    credits = list(scenario["credit_fractions"])
    for n, invoice in enumerate(Invoice.objects.filter(buyer_id__in=ids).order_by("pk")):
        invoice_set_status(invoice=invoice, status="pending_review")
        invoice = invoice_set_status(invoice=invoice, status="approved")
        if credits and invoice.total_minor > 0:
            amount = int(invoice.total_minor * credits.pop())
            if amount > 0:
                credit_note_create(invoice=invoice, amount_minor=amount, reason="property", actor=None)
        if n % scenario["void_every"] == 0:
            invoice_set_status(invoice=invoice, status="void", reason="property")
    # Then the ledger sums to zero in each currency (PostgreSQL's check too) and reconciles with the documents
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    for currency in ("CNY", "USD"):
        assert sum(JournalPosting.objects.filter(currency=currency).values_list("amount_minor", flat=True)) == 0
    assert ledger_reconcile() == []
    # And re-rating every live charge line from the (unchanged) segments finds no drift
    assert billing.services.billing_usage_drift() == []

