"""Nothing lost: a worker SIGKILLed in the middle of provisioning, and Redis down when a booking commits.
Each test runs its own throwaway redis-server as the broker (never the shared one on 6379) and its own
worker processes; the database is the real test database."""

import logging
import os
import signal
import time
from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from inventory.models import DeviceAllocation
from marketplace.models import NodeAssignment, Reservation
from marketplace.services import reservation_create
from marketplace.tasks import reservation_provision_task, reservations_sweep_task
from tests.factories import NodeFactory, OfferFactory, catalog_loaded, member
from tests.provisioning import report_all

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def _offer():
    catalog_loaded()
    node = NodeFactory(card_count=4)
    return OfferFactory(cluster=node.cluster)


def _book(offer, *, start):
    user = member(kind="buyer")
    reservation, _ = reservation_create(organization=user.memberships.get().organization, created_by=user, offer=offer,
                                        card_count=4, start=start, end=start + timedelta(hours=2))
    return reservation


def _lock_waiters(pid_to_skip: int) -> int:
    """Backends of this database, other than ours, waiting for a lock (the provision task, blocked on the row)."""
    with connection.cursor() as cursor:
        # (the query text is not matched: pg_stat_activity truncates it before its FOR UPDATE)
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            " AND pid NOT IN (%s, pg_backend_pid())",
            [pid_to_skip],
        )
        return cursor.fetchone()[0]


def test_a_worker_killed_mid_provisioning_loses_nothing(private_broker, celery_worker_factory):
    # given a booking whose start has come (moved back rather than waiting), not yet provisioned
    offer = _offer()
    reservation = _book(offer, start=timezone.now() + timedelta(minutes=1))
    began = timezone.now() - timedelta(minutes=1)
    Reservation.objects.filter(pk=reservation.pk).update(start=began)
    DeviceAllocation.objects.filter(reservation_id=reservation.pk).update(period=(began, reservation.end))
    worker = celery_worker_factory(broker_url=private_broker.url, name="doomed")
    # and the reservation's row locked by another transaction, so the provision task blocks inside it
    settings_dict = connection.settings_dict
    holder = psycopg2.connect(dbname=settings_dict["NAME"], user=settings_dict["USER"], host=settings_dict["HOST"],
                              port=settings_dict["PORT"] or 5432, password=settings_dict["PASSWORD"] or None)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM marketplace_reservation WHERE id = %s FOR UPDATE", [reservation.pk])
            holder_pid = holder.get_backend_pid()
        reservation_provision_task.delay(reservation.pk)
        deadline = time.monotonic() + 30
        while not _lock_waiters(holder_pid):
            assert time.monotonic() < deadline, "the provision task never reached the reservation's row lock"
            time.sleep(0.1)
        # when the worker process is SIGKILLed while the task runs
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
    finally:
        holder.rollback()
        holder.close()
    # then the killed task left nothing half done
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.REQUESTED and not reservation.assignments.exists()
    # when a new worker starts and the sweeper runs (beat, every minute; the unacknowledged message itself
    # would only be redelivered after the broker's visibility timeout)
    celery_worker_factory(broker_url=private_broker.url, name="successor")
    swept = reservations_sweep_task.delay().get(timeout=60)
    # then provisioning completed: published once, and the node's report turns it active
    assert swept["provisioned"] == 1
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.PROVISIONING
    assert NodeAssignment.objects.filter(reservation=reservation).count() == 1
    assert report_all(reservation).status == Reservation.Status.ACTIVE
    # and the redelivered message, whenever it comes, changes nothing (the task is idempotent)
    assert reservation_provision_task.delay(reservation.pk).get(timeout=60) == {"status": "active", "published": 0}


def test_a_booking_commits_while_redis_is_down_and_the_sweeper_provisions_it_once_redis_is_back(
    private_broker, celery_worker_factory, caplog
):
    offer = _offer()
    # given the broker is down
    private_broker.stop()
    # when a booking that starts now commits
    with caplog.at_level(logging.ERROR, logger="marketplace.provisioning.services"):
        began = time.monotonic()
        reservation = _book(offer, start=timezone.now())
        took = time.monotonic() - began
    # then it succeeded (the failed enqueue is logged, not raised), promptly
    assert Reservation.objects.get(pk=reservation.pk).status == Reservation.Status.REQUESTED
    assert "could not enqueue marketplace.reservation_provision" in caplog.text
    assert took < 15
    # when Redis is back, a worker runs and the sweeper (beat) runs
    private_broker.start()
    celery_worker_factory(broker_url=private_broker.url, name="after-outage")
    swept = reservations_sweep_task.delay().get(timeout=60)
    # then provisioning completed: the assignment is published and the node's report activates it
    assert swept["provisioned"] == 1
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.PROVISIONING
    [assignment] = NodeAssignment.objects.filter(reservation=reservation)
    assert sorted(assignment.device_ids) == sorted(
        DeviceAllocation.objects.filter(reservation_id=reservation.pk).values_list("device_id", flat=True))
    assert report_all(reservation).status == Reservation.Status.ACTIVE
