"""The clock task and the provision task, run by a real Celery worker: a started reservation is provisioned
(never activated by the timer), and running either task again changes nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import DeviceAllocation
from marketplace.models import NodeAssignment, Reservation
from marketplace.services import reservation_create
from marketplace.tasks import reservation_provision_task, reservations_advance_task
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_worker_provisions_a_started_reservation_and_a_second_run_changes_nothing(catalog, celery_worker_process):
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    buyer = member(kind="buyer")
    start = timezone.now() + timedelta(minutes=1)
    reservation, _ = reservation_create(organization=buyer.memberships.get().organization, created_by=buyer, offer=offer,
                                        card_count=8, start=start, end=start + timedelta(hours=2))
    # given the start time has come (moved back rather than waiting)
    Reservation.objects.filter(pk=reservation.pk).update(start=timezone.now() - timedelta(minutes=1))
    DeviceAllocation.objects.filter(reservation_id=reservation.pk).update(
        period=(timezone.now() - timedelta(minutes=1), start + timedelta(hours=2))
    )

    advanced = reservations_advance_task.delay().get(timeout=30)
    first = reservation_provision_task.delay(reservation.pk).get(timeout=30)
    second = reservation_provision_task.delay(reservation.pk).get(timeout=30)

    reservation.refresh_from_db()
    # beat enqueued the provision task; however often it runs, one assignment, and no activation without a report
    assert advanced["started"] == 1
    assert reservation.status == "provisioning" and reservation.active_from is None
    assert second == {"status": "provisioning", "published": 0} and first["status"] == "provisioning"
    assert NodeAssignment.objects.filter(reservation_id=reservation.pk).count() == 1
    assert [c.to_status for c in reservation.status_changes.all()] == ["requested", "provisioning", "provisioning"]
