"""A reservation that failed over, billed by a real billing run: its downtime records (written by
marketplace.failover, closed by provisioning's healthy report) give the invoice an SLA credit line, and
the gap between the failed node's last heartbeat and the new cards' healthy report is not charged."""

from datetime import timedelta
from fractions import Fraction

import pytest

from billing.models import InvoiceLine
from billing.services import billing_run, sla_policy
from inventory.models import DeviceAllocation, Node
from inventory.services import node_set_status
from marketplace.failover import reservations_failover
from marketplace.models import Reservation, ReservationDowntime
from marketplace.services import reservation_create, reservations_advance
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

PRICE = 2500  # per card-hour


def test_a_failed_over_reservation_is_charged_without_the_gap_and_credited_for_it(catalog, settings):
    settings.BILLING_SLA_CREDIT_MULTIPLIER = "2"
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster, price_per_card_hour_minor=PRICE)
    buyer = member(kind="buyer")
    organization = buyer.memberships.get().organization
    start = (offer.created_at + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    reservation, _ = reservation_create(organization=organization, created_by=buyer, offer=offer, card_count=8,
                                        start=start, end=start + timedelta(hours=4))
    # served from 00:05, its node last heard from at 02:00, the new node healthy at 02:30, over at 04:00
    reservation = hand_over(reservation, at=start + timedelta(minutes=5))
    failed = Node.objects.get(pk=DeviceAllocation.objects.filter(reservation_id=reservation.pk).values("node_id")[:1])
    silent_from = start + timedelta(hours=2)
    Node.objects.filter(pk=failed.pk).update(last_heartbeat_at=silent_from)
    failed.refresh_from_db()
    node_set_status(node=failed, status=Node.Status.UNHEALTHY, reason="no heartbeat", cause="network")
    assert reservations_failover(node_ids=[failed.pk], now=silent_from + timedelta(minutes=4))["moved"] == 1
    healthy = silent_from + timedelta(minutes=30)
    reservation = hand_over(Reservation.objects.get(pk=reservation.pk), at=healthy)
    assert reservation.status == Reservation.Status.ACTIVE
    reservations_advance(now=reservation.end + timedelta(minutes=1))
    downtime = ReservationDowntime.objects.get(reservation=reservation)
    assert (downtime.started_at, downtime.ended_at) == (silent_from, healthy)

    # when the billing run invoices the month (and the next, if the reservation crossed into it)
    billing_run(organization_ids=[organization.pk], now=start + timedelta(days=64))

    # then the charge covers 1h55 + 1h30 of 8 cards, and the SLA credit 8 cards x 30 min at N x the price
    lines = InvoiceLine.objects.filter(reservation=reservation)
    charged = sum(line.card_seconds for line in lines if line.kind == "charge")
    assert charged == 8 * (115 + 90) * 60
    credits = [line for line in lines if line.kind == "sla_credit"]
    assert sum(line.card_seconds for line in credits) == 8 * 30 * 60
    assert sla_policy().credit_multiplier == Fraction(2)
    assert sum(line.amount_minor for line in credits) == -(2 * PRICE * 8 // 2)  # 2 x 25.00 x 8 cards x 0.5 h
