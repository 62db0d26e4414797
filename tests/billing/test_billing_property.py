"""Property (hypothesis): for random usage, prices, downtime, run times and credit notes, every invoice
total is the sum of its lines, no second is billed twice across runs and none is lost, and the ledger
sums to zero (and reconciles) after invoicing, credit notes and voids - and, in the second property,
after payments (some cards declining), credit notes before and after payment (refunds), voids of unpaid
invoices and payouts (some transfers reversed and paid again), through localstripe and the Connect fake.
"""

from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import billing.services
from billing.models import BillingAccount, Invoice, InvoiceLine, JournalPosting
from billing.rating import Downtime, Span, rate_reservation
from billing.services import billing_run, credit_note_create, invoice_set_status, ledger_reconcile, sla_policy
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
def test_invoices_add_up_no_second_is_billed_twice_and_the_ledger_balances(offer, usd_offer, monkeypatch, scenario):
    with transaction.atomic():
        _check(offer, usd_offer, monkeypatch, scenario)
        transaction.set_rollback(True)  # each example starts from the same empty books


def _check(offer, usd_offer, monkeypatch, scenario):
    downtime_of: dict[int, list[Downtime]] = {}
    # The run reads marketplace's ReservationDowntime; here it is given the generated intervals instead.
    monkeypatch.setattr(billing.services, "reservation_downtimes", lambda *, reservation_ids, start, end: {
        rid: downtime_of.get(rid, []) for rid in reservation_ids})
    buyers, made = [], []
    for spec in scenario["buyers"]:
        buyer = OrganizationFactory()
        buyers.append(buyer)
        for r in spec:
            target = usd_offer if r["usd"] else offer
            reservation = served(buyer=buyer, offer=target, periods=r["periods"], cards=r["cards"], price=r["price"], status=r["status"],
                                 node_index=r["node"] % target.cluster.nodes.count())
            node_id = reservation.segments.first().node_id
            downtime_of[reservation.pk] = [Downtime(node_id=node_id, started_at=a, ended_at=b) for a, b in r["downtime"]]
            made.append(reservation)
    ids = [b.pk for b in buyers]
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



money_scenarios = st.fixed_dictionaries({
    "buyers": st.lists(st.lists(reservations(), min_size=1, max_size=2), min_size=1, max_size=3),
    "declining_card": st.lists(st.booleans(), min_size=3, max_size=3),  # per buyer: a card that declines every charge
    "credit_before": st.lists(st.fractions(0, 1), min_size=0, max_size=3),
    "credit_after": st.lists(st.fractions(0, 1), min_size=0, max_size=3),
    "void_unpaid_every": st.integers(2, 4),
    "reverse_every": st.integers(1, 4),  # every n-th transfer is reversed, then paid again by the next run
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=money_scenarios)
def test_the_ledger_balances_after_invoicing_payment_refund_and_payout(offer, usd_offer, stripe_settings, connect_fake, scenario):
    """Through localstripe (payments, refunds) and the Connect fake (payouts), over HTTP."""
    with transaction.atomic():
        _check_money(offer, usd_offer, connect_fake, scenario)
        transaction.set_rollback(True)


def _check_money(offer, usd_offer, connect_fake, scenario):
    from billing.models import BillingProfile, Payout, Refund
    from billing.payments import PaymentRefused, invoice_pay, payout_refresh, payout_run, refund_for_credit_note
    from billing.services import platform_fee_minor
    from tests.billing.conftest import card_saved

    buyers = []
    for n, spec in enumerate(scenario["buyers"]):
        buyer = OrganizationFactory()
        buyers.append(buyer)
        for r in spec:
            target = usd_offer if r["usd"] else offer
            served(buyer=buyer, offer=target, periods=r["periods"], cards=r["cards"], price=r["price"], status=r["status"],
                   node_index=r["node"] % target.cluster.nodes.count())
        card_saved(organization=buyer, number="4000000000000341" if scenario["declining_card"][n] else "4242424242424242")
    ids = [b.pk for b in buyers]
    billing_run(organization_ids=ids, now=at(SPAN + 40 * 24 * 3600))
    for provider in (offer.cluster.site.owner, usd_offer.cluster.site.owner):
        BillingProfile.objects.get_or_create(organization=provider, defaults={
            "stripe_connect_account_id": connect_fake.add_account(f"acct_{provider.pk:08d}")})
    before, after = list(scenario["credit_before"]), list(scenario["credit_after"])
    # When finance approves and opens every invoice, credits some, and the buyers pay
    for n, invoice in enumerate(Invoice.objects.filter(buyer_id__in=ids).order_by("pk")):
        for status in ("pending_review", "approved", "open"):
            invoice = invoice_set_status(invoice=invoice, status=status)
        if before and invoice.total_minor > 0 and (amount := int(invoice.total_minor * before.pop())) > 0:
            credit_note_create(invoice=invoice, amount_minor=amount, reason="before payment", actor=None)
        try:
            invoice_pay(invoice_id=invoice.pk)
        except PaymentRefused:
            pass
        invoice.refresh_from_db()
        if invoice.status == "paid":
            owed = invoice.total_minor - sum(note.amount_minor for note in invoice.credit_notes.all())
            if after and owed > 0 and (amount := int(owed * after.pop())) > 0:
                note = credit_note_create(invoice=invoice, amount_minor=amount, reason="after payment", actor=None)
                refund_for_credit_note(credit_note_id=note.pk)  # what the task does after commit
        elif n % scenario["void_unpaid_every"] == 0:
            invoice_set_status(invoice=invoice, status="void", reason="property")
    # And the payout run goes, some transfers are reversed, and it goes again
    payout_run()
    for n, payout in enumerate(Payout.objects.exclude(stripe_transfer_id="").order_by("pk")):
        if n % scenario["reverse_every"] == 0:
            connect_fake.reverse(payout.stripe_transfer_id)
            payout_refresh(payout_id=payout.pk)
    payout_run()
    # Then the ledger sums to zero in each currency (PostgreSQL's check too) and reconciles with the documents
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    for currency in ("CNY", "USD"):
        assert sum(JournalPosting.objects.filter(currency=currency).values_list("amount_minor", flat=True)) == 0
    assert ledger_reconcile() == []
    # And every provider of a paid invoice got exactly its share once (one live payout), nobody else anything
    for invoice in Invoice.objects.filter(buyer_id__in=ids).prefetch_related("lines"):
        live = {p.provider_id: p.amount_minor for p in Payout.objects.filter(invoice=invoice).exclude(status="failed")}
        shares: dict[int, int] = {}
        for line in invoice.lines.all():
            if line.kind == "charge" and line.amount_minor:
                shares[line.provider_id] = shares.get(line.provider_id, 0) + line.amount_minor - platform_fee_minor(line.amount_minor)
        expected = {p: s for p, s in shares.items() if s > 0} if invoice.status == "paid" else {}
        assert live == expected
        # Stripe holds for this invoice exactly what was collected less what was refunded
        collected = sum(a.amount_minor for a in invoice.payment_attempts.filter(status="succeeded"))
        refunded = sum(r.amount_minor for r in Refund.objects.filter(payment__invoice=invoice, status="succeeded"))
        assert collected - refunded == (invoice.total_minor - sum(n.amount_minor for n in invoice.credit_notes.all())
                                        if invoice.status == "paid" else 0)
