"""reservations_advance: reservations move with the clock, and never become active (billable) on
hardware that fails its health check or after their window has passed unseen."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import DeviceAllocation, Node, Site
from marketplace.models import Reservation
from marketplace.services import reservation_create, reservations_advance

pytestmark = pytest.mark.django_db


def booked(offer, user, start, hours=4, cards=8):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


def test_a_requested_reservation_whose_whole_window_passed_unseen_fails_and_frees_its_cards(small_offer, buyer, soon):
    # given a booking whose window passed entirely while beat / the worker was down
    reservation = booked(small_offer, buyer, soon, hours=4)
    # when the scheduler runs again after the end
    moved = reservations_advance(now=soon + timedelta(hours=5))
    # then it failed (never handed over, nothing billed) instead of staying requested forever
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED and moved["failed"] == 1
    assert "never became active" in reservation.status_changes.last().reason_text
    assert not DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).exists()
    # and a second run changes nothing
    assert reservations_advance(now=soon + timedelta(hours=6)) == {"activated": 0, "completed": 0, "failed": 0}


def test_a_provisioning_reservation_past_its_end_fails(small_offer, buyer, soon):
    # given a reservation stuck in provisioning (the worker died mid-way) until after its end
    reservation = booked(small_offer, buyer, soon, hours=4)
    reservations_advance(now=soon + timedelta(minutes=1))
    Reservation.objects.filter(pk=reservation.pk).update(status=Reservation.Status.PROVISIONING)
    # when the scheduler runs after the end
    reservations_advance(now=soon + timedelta(hours=4))
    # then it failed, it did not complete
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED


@pytest.mark.parametrize(
    "break_hardware",
    [
        lambda offer: Node.objects.filter(cluster=offer.cluster).update(status=Node.Status.OFFLINE),
        lambda offer: Node.objects.filter(cluster=offer.cluster).update(mismatch_reason="agent reports 4 cards, listed 8"),
        lambda offer: Site.objects.filter(pk=offer.cluster.site_id).update(lifecycle=Site.Lifecycle.RETIRED),
    ],
    ids=["node offline", "node flagged", "site not online"],
)
def test_a_reservation_on_hardware_that_fails_the_health_check_fails_instead_of_going_active(
    small_offer, buyer, soon, break_hardware
):
    # given a booking whose node (or site) is no longer healthy when the start is reached
    reservation = booked(small_offer, buyer, soon, cards=16)
    break_hardware(small_offer)
    # when the scheduler reaches the start
    moved = reservations_advance(now=soon + timedelta(minutes=1))
    # then it failed, never active (billing starts only after the health check), and the cards are freed
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED and moved == {"activated": 0, "completed": 0, "failed": 1}
    assert "health check" in reservation.status_changes.last().reason_text
    assert "active" not in [change.to_status for change in reservation.status_changes.all()]
    assert not DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).exists()


def test_a_reservation_on_healthy_hardware_goes_active_at_the_start(small_offer, buyer, soon):
    # given a booking on online, unflagged nodes of an online site
    reservation = booked(small_offer, buyer, soon)
    # when the start is reached, then it is active
    assert reservations_advance(now=soon)["activated"] == 1
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.ACTIVE


def test_the_health_check_is_one_query_per_reservation_however_many_devices(small_offer, buyer, soon, django_assert_max_num_queries):
    from inventory.allocations import reservation_devices_unhealthy

    # given a 16-card reservation with one of its two nodes offline
    reservation = booked(small_offer, buyer, soon, cards=16)
    Node.objects.filter(hostname="h100-b").update(status=Node.Status.OFFLINE)
    # when the health check counts, then one query answers and names the 8 bad cards
    with django_assert_max_num_queries(1):
        assert reservation_devices_unhealthy(reservation_id=reservation.pk) == 8
    assert timezone.now() < soon
