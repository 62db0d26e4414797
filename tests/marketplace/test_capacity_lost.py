"""Inventory events reach the market after commit: a node that goes offline, unhealthy or retired
(or a retired cluster) sends inventory.signals.capacity_lost on commit; marketplace enqueues
marketplace.reservations_on_capacity_lost, which notes it on each affected reservation."""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inventory.models import Node
from inventory.services import node_set_status
from inventory.signals import capacity_lost
from marketplace.models import Reservation, ReservationStatusChange
from marketplace.services import reservation_create, reservations_note_capacity_lost


def booked(offer, user, start, hours=4, cards=8):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


def node_of(reservation):
    from inventory.models import DeviceAllocation

    return Node.objects.get(pk=DeviceAllocation.objects.filter(reservation_id=reservation.pk).values("node_id")[:1])


def queued_tasks() -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("celery")


class Received:
    def __init__(self):
        self.calls = []

    def __call__(self, sender, *, node_ids, **kwargs):
        self.calls.append(node_ids)


@pytest.mark.django_db
def test_the_event_is_written_once_per_reservation_and_node_change_however_often_the_task_runs(small_offer, buyer, soon):
    # given an upcoming reservation on a node, and a cancelled one on the same node
    upcoming = booked(small_offer, buyer, soon)
    node = node_of(upcoming)
    # when the node goes offline and the task runs twice (a redelivery)
    node_set_status(node=node, status=Node.Status.OFFLINE, reason="no heartbeat")
    assert reservations_note_capacity_lost(node_ids=[node.pk]) == 1
    assert reservations_note_capacity_lost(node_ids=[node.pk]) == 0
    # then one coded event on the reservation, and nothing else about it changed
    upcoming.refresh_from_db()
    event = upcoming.status_changes.get(reason_code="capacity_lost")
    assert upcoming.status == Reservation.Status.REQUESTED and event.from_status == event.to_status == "requested"
    assert event.reason_params["cards"] == 8 and "status became offline" in event.reason_text


@pytest.mark.django_db(transaction=True)
def test_a_booking_whose_transaction_rolls_back_enqueues_nothing(small_offer, buyer, soon):
    # given a receiver watching the signal and the broker's queue
    received = Received()
    capacity_lost.connect(received, dispatch_uid="test-rollback")
    before = queued_tasks()
    try:
        # when a booking and a node going offline happen in one transaction that rolls back
        with pytest.raises(RuntimeError), transaction.atomic():
            reservation = booked(small_offer, buyer, soon)
            node_set_status(node=node_of(reservation), status=Node.Status.OFFLINE, reason="no heartbeat")
            raise RuntimeError("rolled back")
        # then no signal was sent and no task reached the broker
        assert received.calls == [] and queued_tasks() == before
        assert not Reservation.objects.exists()
        # and the same change committed does send it, once
        node = Node.objects.filter(cluster=small_offer.cluster).first()
        node_set_status(node=node, status=Node.Status.OFFLINE, reason="no heartbeat")
        assert received.calls == [[node.pk]]
    finally:
        capacity_lost.disconnect(dispatch_uid="test-rollback")


@pytest.mark.django_db(transaction=True)
def test_a_node_taken_offline_reaches_its_reservations_through_a_real_worker(small_offer, buyer, celery_worker_process):
    # given an active-soon reservation whose node is online, and a real Celery worker
    reservation = booked(small_offer, buyer, timezone.now() + timedelta(hours=1))
    node = node_of(reservation)
    # when the node is taken offline (committed)
    node_set_status(node=node, status=Node.Status.OFFLINE, reason="operator took it down")
    # then the worker writes the coded event on the reservation
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ReservationStatusChange.objects.filter(reservation=reservation, reason_code="capacity_lost").exists():
            break
        time.sleep(0.2)
    event = ReservationStatusChange.objects.get(reservation=reservation, reason_code="capacity_lost")
    assert event.reason_params["node"] == node.hostname and event.reason_params["node_status"] == "offline"
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.REQUESTED  # an upcoming booking stays requested (failover may re-home it)


@pytest.mark.django_db(transaction=True)
def test_retiring_a_cluster_announces_each_of_its_nodes_after_commit(small_offer):
    from inventory.services import cluster_retire, offer_retire

    # given a cluster with two nodes and no bookings, and a receiver watching the signal
    received = Received()
    capacity_lost.connect(received, dispatch_uid="test-cluster-retire")
    try:
        offer_retire(offer=small_offer)
        # when the provider retires the cluster
        cluster_retire(cluster=small_offer.cluster)
        # then both nodes were announced as lost
        announced = sorted(node_id for call in received.calls for node_id in call)
        assert announced == sorted(Node.objects.filter(cluster=small_offer.cluster).values_list("pk", flat=True))
    finally:
        capacity_lost.disconnect(dispatch_uid="test-cluster-retire")


@pytest.mark.django_db
def test_a_provider_putting_a_booked_node_into_maintenance_is_told_to_its_buyers(small_offer, buyer, soon):
    # given an upcoming reservation on a node
    upcoming = booked(small_offer, buyer, soon)
    node = node_of(upcoming)
    # when the provider sets the node to maintenance by hand and the market hears of it
    node_set_status(node=node, status=Node.Status.MAINTENANCE, reason="changed by the provider")
    assert reservations_note_capacity_lost(node_ids=[node.pk]) == 1
    # then the buyer's timeline says so (never silently)
    event = upcoming.status_changes.get(reason_code="capacity_lost")
    assert event.reason_params["node_status"] == "maintenance" and "status became maintenance" in event.reason_text
