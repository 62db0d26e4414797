"""reservations_advance: reservations move with the clock - a start reached starts provisioning (never
activation: only the nodes' reports do that), an end reached completes, a window passed unseen fails -
and they never become active (billable) on hardware that fails its health check."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import DeviceAllocation, Node, Site
from marketplace.models import NodeAssignment, Reservation
from marketplace.provisioning.services import reservation_provision
from marketplace.services import reservation_create, reservations_advance
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

NOTHING = {"started": 0, "completed": 0, "failed": 0}


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
    assert reservations_advance(now=soon + timedelta(hours=6)) == NOTHING


def test_a_provisioning_reservation_past_its_end_fails_and_its_nodes_are_told_to_stop(small_offer, buyer, soon):
    # given a reservation published to its node whose agent never reported, until after its end
    reservation = booked(small_offer, buyer, soon, hours=4)
    reservation_provision(reservation.pk, now=soon + timedelta(minutes=1))
    # when the scheduler runs after the end
    reservations_advance(now=soon + timedelta(hours=4))
    # then it failed, it did not complete, and its node is to stop the workload
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED
    assert list(reservation.assignments.values_list("desired", flat=True)) == [NodeAssignment.Desired.STOP]


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
    # when its start comes and provisioning runs
    reservation_provision(reservation.pk, now=soon + timedelta(minutes=1))
    # then it failed, never active (billing starts only after the health check), the cards are freed
    # and nothing was sent to the nodes
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED and not reservation.assignments.exists()
    assert "health check" in reservation.status_changes.last().reason_text
    assert "active" not in [change.to_status for change in reservation.status_changes.all()]
    assert not DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).exists()


def test_the_start_enqueues_provisioning_after_commit_and_never_activates_on_the_timer(
    small_offer, buyer, soon, django_capture_on_commit_callbacks
):
    # given a booking on online, unflagged nodes of an online site
    reservation = booked(small_offer, buyer, soon)
    # when the start is reached, beat enqueues the provision task (after its commit) and moves nothing itself
    with django_capture_on_commit_callbacks() as callbacks:
        assert reservations_advance(now=soon) == {**NOTHING, "started": 1}
    assert len(callbacks) == 1
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.REQUESTED
    # and provisioning leaves it provisioning until the node reports: the timer alone never activates
    reservation_provision(reservation.pk, now=soon)
    reservations_advance(now=soon + timedelta(minutes=5))
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.PROVISIONING and reservation.active_from is None
    # the node's report does, at its arrival
    assert hand_over(reservation, at=soon + timedelta(minutes=6)).status == Reservation.Status.ACTIVE
    assert reservation.active_from == soon + timedelta(minutes=6)


def test_the_health_check_is_one_query_per_reservation_however_many_devices(small_offer, buyer, soon, django_assert_max_num_queries):
    from inventory.allocations import reservation_devices_unhealthy

    # given a 16-card reservation with one of its two nodes offline
    reservation = booked(small_offer, buyer, soon, cards=16)
    Node.objects.filter(hostname="h100-b").update(status=Node.Status.OFFLINE)
    # when the health check counts, then one query answers and names the 8 bad cards
    with django_assert_max_num_queries(1):
        assert reservation_devices_unhealthy(reservation_id=reservation.pk) == 8
    assert timezone.now() < soon
