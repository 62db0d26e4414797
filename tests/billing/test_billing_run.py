"""The billing run: whole local months of each buyer, one draft invoice per currency, a line per
reservation (and provider), evidence per device-hour, a cursor that never skips or repeats, and a
database that refuses to invoice the same usage twice."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import Organization
from billing.models import BillingAccount, Invoice, InvoiceLine, InvoiceLineEvidence
from billing.services import billing_run, billing_run_organization, invoice_redraft, invoice_set_status, invoice_void
from marketplace.models import Reservation, UsageHourly
from tests.billing.conftest import APRIL, MARCH, MAY, H, served
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def lines_of(org):
    return list(InvoiceLine.objects.filter(invoice__buyer=org).order_by("period_start", "reservation_id", "kind")
                .values_list("reservation_id", "kind", "period_start", "card_seconds", "amount_minor"))


def test_a_month_is_invoiced_once_after_it_ends_in_the_buyers_zone(buyer_org, offer):
    # Given 10 h on 8 cards at 25.00/card-hour in March (Shanghai time)
    reservation = served(buyer=buyer_org, offer=offer, periods=[(MARCH + 24 * H, MARCH + 34 * H)])
    # When the run looks one hour before April starts in Shanghai: nothing is due yet
    assert billing_run_organization(organization_id=buyer_org.pk, now=APRIL - H) == []
    # When it runs one hour after
    created = billing_run_organization(organization_id=buyer_org.pk, now=APRIL + H)
    # Then one CNY draft for March with one charge line: 8 x 10 h x 2500
    [invoice] = Invoice.objects.filter(pk__in=created)
    assert (invoice.currency, invoice.period_start, invoice.period_end, invoice.status) == ("CNY", MARCH, APRIL, "draft")
    assert lines_of(buyer_org) == [(reservation.pk, "charge", MARCH, 8 * 36000, 200_000)]
    assert invoice.total_minor == 200_000 and invoice.number is None
    account = BillingAccount.objects.get(organization=buyer_org)
    assert account.invoiced_through == APRIL and account.invoicing_status == "done"
    # And a second run (or the same one retried) creates nothing
    assert billing_run_organization(organization_id=buyer_org.pk, now=APRIL + 2 * H) == []
    assert Invoice.objects.count() == 1


def test_the_month_follows_the_accounts_time_zone(buyer_org, offer):
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + 24 * H, MARCH + 34 * H)])
    BillingAccount.objects.create(organization=buyer_org, time_zone="UTC")
    # 1 April 01:00 in Shanghai is still 31 March in UTC: the UTC buyer's March has not ended
    assert billing_run_organization(organization_id=buyer_org.pk, now=APRIL + H) == []
    [invoice] = Invoice.objects.filter(pk__in=billing_run_organization(
        organization_id=buyer_org.pk, now=datetime(2026, 4, 1, 0, 5, tzinfo=UTC)))
    assert (invoice.period_start, invoice.period_end) == (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def test_a_reservation_across_months_is_split_at_the_boundary_without_losing_a_second(buyer_org, offer):
    reservation = served(buyer=buyer_org, offer=offer, cards=2,
                         periods=[(APRIL - 5 * H - timedelta(microseconds=300), APRIL + 7 * H + timedelta(seconds=1, microseconds=5))])
    billing_run(now=MAY + H)
    rows = lines_of(buyer_org)
    # Instants are floored to the second: the start counts from 18:59:59 (5 h 1 s before April), the end
    # at 07:00:01 - each month bills its side, and together exactly the whole segment
    assert [(r[2], r[3]) for r in rows] == [(MARCH, 2 * (5 * 3600 + 1)), (APRIL, 2 * (7 * 3600 + 1))]
    assert sum(r[3] for r in rows) == 2 * (12 * 3600 + 2)
    assert {r[0] for r in rows} == {reservation.pk}
    assert BillingAccount.objects.get(organization=buyer_org).invoiced_through == MAY


def test_each_currency_gets_its_own_invoice_and_failed_or_cancelled_bill_nothing(buyer_org, offer, usd_offer):
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)])
    served(buyer=buyer_org, offer=usd_offer, cards=1, periods=[(MARCH + H, MARCH + 3 * H)])
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + 5 * H, MARCH + 9 * H)], status=Reservation.Status.FAILED, node_index=1)
    billing_run(now=APRIL + H)
    invoices = {i.currency: i.total_minor for i in Invoice.objects.filter(buyer=buyer_org)}
    assert invoices == {"CNY": 8 * 2500, "USD": 2 * 399}


def test_every_line_carries_its_device_hours_with_the_sampled_usage(buyer_org, offer):
    reservation = served(buyer=buyer_org, offer=offer, cards=2, periods=[(MARCH + 10 * H + timedelta(minutes=30), MARCH + 12 * H)])
    device_ids = reservation.segments.get().device_ids
    UsageHourly.objects.create(hour=MARCH + 11 * H, device_id=device_ids[0], node_id=reservation.segments.get().node_id,
                               reservation=reservation, samples=60, busy_seconds=3000.0, utilization_mean=83.5,
                               memory_max_mib=1000, energy_wh=500.0, computed_at=timezone.now())
    billing_run(now=APRIL + H)
    line = InvoiceLine.objects.get(reservation=reservation)
    evidence = list(InvoiceLineEvidence.objects.filter(line=line).values_list("device_id", "hour", "billable_seconds", "samples",
                                                                               "utilization_mean"))
    assert sum(e[2] for e in evidence) == line.card_seconds == 2 * 5400
    assert (device_ids[0], MARCH + 11 * H, 3600, 60, 83.5) in evidence
    assert (device_ids[1], MARCH + 10 * H, 1800, 0, None) in evidence


def test_the_database_refuses_to_invoice_the_same_usage_twice_until_the_first_invoice_is_void(buyer_org, offer):
    reservation = served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)])
    billing_run(now=APRIL + H)
    first = Invoice.objects.get()
    line = first.lines.get()
    # Given a second invoice (a racing run, a bug) trying to bill a range overlapping the first line's
    other = Invoice.objects.create(buyer=buyer_org, currency="CNY", period_start=MARCH + 10 * H, period_end=APRIL + 10 * H)
    duplicate = dict(invoice=other, reservation=reservation, provider_id=line.provider_id, kind="charge", period_start=MARCH + 10 * H,
                     period_end=APRIL + 10 * H, card_seconds=1, price_per_card_hour_minor=2500, amount_minor=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.create(**duplicate)
    # When the first invoice is voided, its usage may be invoiced again
    invoice_set_status(invoice=first, status="void", reason="wrong buyer zone")
    InvoiceLine.objects.create(**duplicate)


def test_billing_run_command_runs_one_organization_on_demand(buyer_org, offer, capsys):
    served(buyer=buyer_org, offer=offer, periods=[(timezone.now() - timedelta(days=70), timezone.now() - timedelta(days=69))])
    call_command("billing_run", organization=buyer_org.slug)
    assert "draft invoice(s) created" in capsys.readouterr().out
    assert Invoice.objects.filter(buyer=buyer_org).count() == 1


def test_billing_run_command_shows_a_progress_bar_on_stderr_unless_asked_not_to(offer, capsys):
    buyers = [OrganizationFactory(kind=Organization.Kind.BUYER) for _ in range(3)]
    served(buyer=buyers[0], offer=offer, periods=[(timezone.now() - timedelta(days=70), timezone.now() - timedelta(days=69))])
    call_command("billing_run")
    captured = capsys.readouterr()
    all_buyers = Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH]).count()
    assert "1 draft invoice(s) created" in captured.out
    # the bar counts the buyer organizations, on stderr so stdout stays the result
    assert "billing run" in captured.err and f"{all_buyers}/{all_buyers}" in captured.err and "1 invoice(s)" in captured.err
    call_command("billing_run", organization=buyers[0].slug, no_progress=True)
    assert capsys.readouterr().err == ""


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_invoice_each_month_once(buyer_org, offer):
    for day in range(5):
        served(buyer=buyer_org, offer=offer, periods=[(MARCH + day * 24 * H, MARCH + (day * 24 + 3) * H)], node_index=day % 2)
    served(buyer=buyer_org, offer=offer, cards=4, periods=[(APRIL + H, APRIL + 3 * H)])
    errors = []
    barrier = threading.Barrier(2)

    def run():
        try:
            barrier.wait()
            billing_run_organization(organization_id=buyer_org.pk, now=MAY + H)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Invoice.objects.values_list("period_start", flat=True)) == [MARCH, APRIL]
    assert InvoiceLine.objects.count() == 6


def test_a_buyer_has_one_live_invoice_per_currency_and_month(buyer_org, offer):
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)])
    billing_run(now=APRIL + H)
    first = Invoice.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(buyer=buyer_org, currency="CNY", period_start=MARCH, period_end=APRIL)
    invoice_set_status(invoice=first, status="void", reason="rebuild")
    Invoice.objects.create(buyer=buyer_org, currency="CNY", period_start=MARCH, period_end=APRIL)


def test_a_reservation_moved_to_another_providers_cards_gets_a_line_per_provider(buyer_org, offer, catalog):
    from tests.factories import ClusterFactory, NodeFactory, OfferFactory

    other_cluster = ClusterFactory()
    NodeFactory(cluster=other_cluster)
    other_offer = OfferFactory(cluster=other_cluster)
    reservation = served(buyer=buyer_org, offer=offer, cards=2, periods=[(MARCH + H, MARCH + 3 * H)])
    # moved after a node failure: 1 h on the other provider's node at the same locked price
    served_elsewhere = served(buyer=buyer_org, offer=other_offer, cards=2, periods=[(MARCH + 4 * H, MARCH + 5 * H)])
    segment = served_elsewhere.segments.get()
    segment.reservation = reservation
    segment.save()
    served_elsewhere.delete()
    billing_run(now=APRIL + H)
    lines = {line.provider_id: (line.card_seconds, line.amount_minor) for line in InvoiceLine.objects.filter(reservation=reservation)}
    assert lines == {offer.cluster.site.owner_id: (2 * 7200, 10_000), other_offer.cluster.site.owner_id: (2 * 3600, 5_000)}
    assert Invoice.objects.get().total_minor == 15_000


def test_the_account_takes_its_first_owners_time_zone(offer):
    from tests.factories import member

    owner = member()
    owner.time_zone = "America/New_York"
    owner.save()
    org = owner.memberships.get().organization
    served(buyer=org, offer=offer, periods=[(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 10, 5, tzinfo=UTC))])
    # 1 April 03:00 UTC is still 31 March in New York: nothing due; at 04:00 UTC (midnight there) March is
    assert billing_run(now=datetime(2026, 4, 1, 3, tzinfo=UTC)) == 0
    assert billing_run(now=datetime(2026, 4, 1, 4, tzinfo=UTC)) == 1
    invoice = Invoice.objects.get()
    assert (invoice.period_start, invoice.period_end) == (datetime(2026, 3, 1, 5, tzinfo=UTC), datetime(2026, 4, 1, 4, tzinfo=UTC))


def test_the_hourly_run_skips_buyers_with_nothing_due_and_resumes_one_left_started(buyer_org, offer, django_assert_max_num_queries):
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)])
    billing_run(now=APRIL + H)
    # Given the month is invoiced: the next hourly runs read the cursors and do nothing else
    with django_assert_max_num_queries(2):
        assert billing_run(now=APRIL + 2 * H) == 0
    # Given a run died holding the account (started): the next run takes it again and finishes
    BillingAccount.objects.filter(organization=buyer_org).update(invoicing_status="started")
    assert billing_run(now=APRIL + 3 * H) == 0
    assert BillingAccount.objects.get(organization=buyer_org).invoicing_status == "done"


def test_a_segment_closed_after_its_month_was_invoiced_is_reported_as_drift(buyer_org, offer, capsys):
    from django.core.management import CommandError

    from billing.services import billing_usage_drift

    # Given a segment still open when March was invoiced (billed to the end of March)
    reservation = served(buyer=buyer_org, offer=offer, cards=1, periods=[(APRIL - 2 * H, None)], status=Reservation.Status.ACTIVE)
    billing_run(now=APRIL + H)
    assert billing_usage_drift() == []
    # When the agent's late report closes it one hour before the end of March
    reservation.segments.update(ended_at=APRIL - H)
    # Then the reconciliation names the line and both figures, and fails
    [drift] = billing_usage_drift()
    assert f"reservation {reservation.pk}: invoiced 7200 card-seconds (5000), its segments now say 3600 (2500)" in drift
    with pytest.raises(CommandError, match="1 invoiced line"):
        call_command("billing_reconcile")


def test_a_buyer_the_database_refuses_does_not_hold_up_the_others(offer):
    from billing.services import BillingRunIncomplete
    from tests.factories import OrganizationFactory

    refused, fine = OrganizationFactory(), OrganizationFactory()
    reservation = served(buyer=refused, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)])
    served(buyer=fine, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)], node_index=1)
    # Given March usage of one buyer already on a live invoice (made by hand, outside the run)
    invoice = Invoice.objects.create(buyer=refused, currency="USD", period_start=MARCH, period_end=APRIL)
    InvoiceLine.objects.create(invoice=invoice, reservation=reservation, provider=offer.cluster.site.owner, kind="charge",
                               period_start=MARCH, period_end=APRIL, card_seconds=1, price_per_card_hour_minor=1, amount_minor=1)
    # When the run goes over both
    with pytest.raises(BillingRunIncomplete) as refusal:
        billing_run(organization_ids=[refused.pk, fine.pk], now=APRIL + H)
    # Then the other buyer is invoiced, the refused one is named, left started, and has nothing half written
    assert refusal.value.organization_ids == [refused.pk] and refusal.value.created == 1
    assert Invoice.objects.filter(buyer=fine).count() == 1
    assert Invoice.objects.filter(buyer=refused).count() == 1
    assert BillingAccount.objects.get(organization=refused).invoicing_status == "started"


def test_billing_run_command_refuses_an_unknown_organization():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="No organization with slug 'nobody'"):
        call_command("billing_run", organization="nobody")


def test_void_and_redraft_bills_the_voided_month_again_once_and_a_plain_void_does_not(buyer_org, offer, usd_offer):
    # Given March served in CNY (10 h x 8 cards) and in USD, each on its own draft
    served(buyer=buyer_org, offer=offer, periods=[(MARCH + H, MARCH + 11 * H)])
    served(buyer=buyer_org, offer=usd_offer, cards=1, periods=[(MARCH + H, MARCH + 2 * H)])
    billing_run(organization_ids=[buyer_org.pk], now=APRIL + H)
    cny = Invoice.objects.get(buyer=buyer_org, currency="CNY")
    usd = Invoice.objects.get(buyer=buyer_org, currency="USD")
    before = cny.lines.values_list("kind", "card_seconds", "amount_minor").get()
    # When finance voids the CNY draft and redrafts it
    redraft = invoice_redraft(invoice=cny, actor=None, reason="wrong evidence, rebuild")
    # Then March's CNY usage is on one live invoice again (same numbers), the USD sibling untouched
    assert Invoice.objects.get(pk=cny.pk).status == "void"
    assert redraft.status == "draft" and (redraft.currency, redraft.period_start) == ("CNY", cny.period_start)
    assert redraft.lines.values_list("kind", "card_seconds", "amount_minor").get() == before == ("charge", 8 * 10 * 3600, 8 * 10 * 2500)
    assert redraft.status_changes.get().reason == f"redraft of void invoice {cny.pk}: wrong evidence, rebuild"
    assert InvoiceLine.objects.filter(invoice__buyer=buyer_org, is_void=False, invoice__currency="USD").count() == 1
    assert Invoice.objects.get(pk=usd.pk).status == "draft"
    # a later run does not bill March a second time
    billing_run(organization_ids=[buyer_org.pk], now=MAY + H)
    assert InvoiceLine.objects.filter(invoice__buyer=buyer_org, is_void=False, invoice__currency="CNY").count() == 1
    # a plain void leaves the usage unbilled (on purpose: usage that should never be billed), and no run brings it back
    invoice_void(invoice=redraft, actor=None, reason="not billable")
    billing_run(organization_ids=[buyer_org.pk], now=MAY + 2 * H)
    assert not InvoiceLine.objects.filter(invoice__buyer=buyer_org, is_void=False, invoice__currency="CNY").exists()


def test_a_failover_gives_the_buyer_an_sla_credit_for_the_recorded_downtime(small_offer, buyer, soon):  # noqa: F811
    from billing.rating import Span, rate_reservation
    from billing.selectors import reservation_downtimes
    from billing.services import sla_policy
    from marketplace.failover import reservations_failover
    from marketplace.models import ReservationDowntime, ReservationSegment
    from marketplace.provisioning.services import reservation_provision
    from tests.marketplace.test_failover import fail, node_holding
    from tests.marketplace.test_service_periods import booked
    from tests.provisioning import hand_over, report_all

    # Given an active 8-card reservation whose node fails 2 h in; it is moved and served again 9 min later
    reservation = booked(small_offer, buyer, soon)
    hand_over(reservation, at=soon + timedelta(minutes=7))
    failed = node_holding(reservation)
    at = soon + timedelta(hours=2)
    fail(failed, last_heartbeat=at)
    assert reservations_failover(node_ids=[failed.pk], now=at + timedelta(minutes=4))["moved"] == 1
    reservation_provision(reservation.pk, now=at + timedelta(minutes=5))
    report_all(reservation, at=at + timedelta(minutes=9))
    assert ReservationDowntime.objects.get(reservation=reservation).seconds == 9 * 60
    # When it is rated over its service (through the selector billing uses)
    segments = ReservationSegment.objects.filter(reservation=reservation)
    spans = [Span(s.node_id, tuple(s.device_ids), s.started_at, s.ended_at, s.price_per_card_hour_minor) for s in segments]
    downtimes = reservation_downtimes(reservation_ids=[reservation.pk], start=soon, end=soon + timedelta(days=1))[reservation.pk]
    rating = rate_reservation(status="active", spans=spans, downtimes=downtimes, period_start=soon,
                              period_end=soon + timedelta(hours=4), policy=sla_policy())
    # Then the 9 min x 8 cards are down and credited, and the gap is charged nowhere
    assert rating.down_card_seconds == 8 * 9 * 60
    assert rating.sla_credit_minor == sla_policy().credit_multiplier * 8 * small_offer.price_per_card_hour_minor * 9 // 60
    served_seconds = sum(int(((s.ended_at or soon + timedelta(hours=4)) - s.started_at).total_seconds()) * len(s.device_ids)
                         for s in segments)
    assert rating.card_seconds == served_seconds
    # And the billing run writes it as an SLA credit line beside the charge
    billing_run(organization_ids=[reservation.buyer_id], now=soon + timedelta(days=70))
    credit = InvoiceLine.objects.get(reservation=reservation, kind="sla_credit")
    assert (credit.card_seconds, -credit.amount_minor) == (8 * 9 * 60, rating.sla_credit_minor)


def test_a_failover_just_before_the_month_ends_credits_the_downtime_in_the_month_it_fell(buyer_org, offer):
    from marketplace.models import ReservationDowntime, ReservationSegment

    # Given node 0 fails 5 min before April (Shanghai); the reservation is served on node 1 from 00:10 April
    reservation = served(buyer=buyer_org, offer=offer, periods=[(APRIL - 2 * H, APRIL - timedelta(minutes=5))])
    failed, other = offer.cluster.nodes.order_by("pk")[:2]
    ReservationSegment.objects.create(
        reservation=reservation, node=other, device_ids=list(other.devices.order_by("index").values_list("pk", flat=True)[:8]),
        provider=offer.cluster.site.owner, offer=offer, started_at=APRIL + timedelta(minutes=10), ended_at=APRIL + 2 * H,
        price_per_card_hour_minor=2500, currency="CNY")
    ReservationDowntime.objects.create(reservation=reservation, node=failed, started_at=APRIL - timedelta(minutes=5),
                                       ended_at=APRIL + timedelta(minutes=10), cause="host_fault")
    billing_run(organization_ids=[buyer_org.pk], now=MAY + 2 * H)
    credits = dict(InvoiceLine.objects.filter(reservation=reservation, kind="sla_credit").values_list("period_start", "card_seconds"))
    # Then each month credits its own part of the 15 min on the 8 cards of the failed node: 5 min in March, 10 in April
    assert credits == {MARCH: 8 * 5 * 60, APRIL: 8 * 10 * 60}
