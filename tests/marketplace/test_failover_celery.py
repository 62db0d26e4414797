"""Failover end to end on a real Celery worker and Redis: a node stops heartbeating -> the stale sweep
makes it unhealthy -> capacity_lost after commit -> marketplace's task on the worker -> the reservation
is migrating on other cards, with its downtime recorded. And the operators' "mark node failed" button
reaching the same failover through the worker."""

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inventory.agent_services import nodes_mark_stale
from inventory.models import DeviceAllocation, Node, ReliabilityEvent
from marketplace.models import Reservation, ReservationDowntime
from marketplace.services import reservation_create
from tests.factories import UserFactory, staff_group
from tests.provisioning import hand_over

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def _active(offer, buyer, soon):
    reservation, _ = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=8,
        start=soon, end=soon + timedelta(hours=4),
    )
    reservation = hand_over(reservation, at=soon + timedelta(minutes=5))
    assert reservation.status == Reservation.Status.ACTIVE
    node = Node.objects.get(pk=DeviceAllocation.objects.filter(reservation_id=reservation.pk).values("node_id")[:1])
    return reservation, node


def _wait_until_migrating(reservation, timeout=60) -> Reservation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reservation.refresh_from_db()
        if reservation.status == Reservation.Status.MIGRATING:
            return reservation
        time.sleep(0.2)
    raise AssertionError(f"reservation {reservation.pk} is still {reservation.status} after {timeout}s")


def _held_nodes(reservation):
    return set(DeviceAllocation.objects.filter(
        reservation_id=reservation.pk, is_active=True, period__endswith__gt=reservation.end - timedelta(minutes=1)
    ).values_list("node_id", flat=True))


def test_a_silent_node_fails_over_through_the_sweep_and_a_real_worker(small_offer, buyer, soon, settings, celery_worker_process):
    # given an active reservation on one node of a two-node cluster; the other node heartbeats
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
    reservation, node = _active(small_offer, buyer, soon)
    other = Node.objects.filter(cluster=small_offer.cluster).exclude(pk=node.pk).get()
    # when the node's agent has been silent for ten minutes and the stale sweep runs (committed)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert nodes_mark_stale() == [node.pk]
    # then, through capacity_lost and the worker, the reservation is migrating onto the other node's cards
    reservation = _wait_until_migrating(reservation)
    assert _held_nodes(reservation) == {other.pk}
    assert Node.objects.get(pk=node.pk).status == Node.Status.UNHEALTHY
    downtime = ReservationDowntime.objects.get(reservation=reservation)
    assert downtime.node_id == node.pk and downtime.ended_at is None and downtime.cause == "network"
    kinds = set(ReliabilityEvent.objects.filter(node=node).values_list("kind", flat=True))
    assert kinds == {"heartbeat_missed", "failover"}


def test_the_operators_button_fails_a_node_over_through_a_real_worker(small_offer, buyer, soon, celery_worker_process):
    reservation, node = _active(small_offer, buyer, soon)
    operator = UserFactory()
    operator.groups.add(staff_group("operator"))
    client = Client()
    client.force_login(operator)
    response = client.post("/operator/nodes/fail/", {"node": node.pk, "cause": "host_fault", "reason": "demo", "confirm": "on"})
    assert response.status_code == 302
    reservation = _wait_until_migrating(reservation)
    assert node.pk not in _held_nodes(reservation) and len(_held_nodes(reservation)) == 1
    assert ReservationDowntime.objects.get(reservation=reservation).cause == "host_fault"
