"""The clock task, run by a real Celery worker: started reservations become active, ended ones complete."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from marketplace.services import reservation_create
from marketplace.tasks import reservations_advance_task
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_worker_activates_a_started_reservation_and_a_second_run_changes_nothing(catalog, celery_worker_process):
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

    first = reservations_advance_task.delay().get(timeout=30)
    second = reservations_advance_task.delay().get(timeout=30)

    reservation.refresh_from_db()
    assert reservation.status == "active"
    assert first == {"activated": 1, "completed": 0, "failed": 0} and second == {"activated": 0, "completed": 0, "failed": 0}
    assert [c.to_status for c in reservation.status_changes.all()] == ["requested", "provisioning", "active"]
