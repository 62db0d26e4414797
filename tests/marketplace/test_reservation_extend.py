"""Extending a reservation follows the same rules as booking it."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from inventory.allocations import period_range
from inventory.models import Node, Offer, Site
from marketplace.models import Reservation
from marketplace.services import BookingConflict, reservation_create, reservation_extend

pytestmark = pytest.mark.django_db


@pytest.fixture
def reservation(small_offer, buyer, soon):
    booked, _ = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=small_offer, card_count=8,
        start=soon, end=soon + timedelta(hours=4),
    )
    return booked


def test_extending_after_the_offer_was_withdrawn_is_refused(reservation, small_offer, buyer, soon):
    # given the provider withdrew the offer after the booking
    Offer.objects.filter(pk=small_offer.pk).update(is_active=False)
    # when the buyer extends, then it is refused and the end does not move
    with pytest.raises(BookingConflict, match="withdrawn"):
        reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)
    reservation.refresh_from_db()
    assert reservation.end == soon + timedelta(hours=4)


def test_extending_past_the_rentable_period_is_refused(reservation, small_offer, buyer, soon):
    # given the capacity is rentable only until hour 5
    Offer.objects.filter(pk=small_offer.pk).update(rentable_period=period_range(soon - timedelta(days=1), soon + timedelta(hours=5)))
    # when the buyer extends to hour 6, then 400 on `end`; to hour 5 it works
    with pytest.raises(ValidationError) as refused:
        reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)
    assert "not rentable" in refused.value.message_dict["end"][0]
    assert reservation_extend(reservation=reservation, end=soon + timedelta(hours=5), actor=buyer).end == soon + timedelta(hours=5)


def test_extending_past_the_maximum_duration_is_refused(reservation, small_offer, buyer, soon):
    # given the offer rents for at most 5 hours in one booking
    Offer.objects.filter(pk=small_offer.pk).update(max_duration_hours=5)
    # when the buyer extends the 4-hour booking to 6 hours, then it is refused
    with pytest.raises(ValidationError, match="hours"):
        reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)


@pytest.mark.parametrize(
    "break_hardware",
    [
        lambda offer: Node.objects.filter(cluster=offer.cluster).update(status=Node.Status.OFFLINE),
        lambda offer: Node.objects.filter(cluster=offer.cluster).update(mismatch_reason="agent reports another model"),
        lambda offer: Site.objects.filter(pk=offer.cluster.site_id).update(lifecycle=Site.Lifecycle.RETIRED),
    ],
    ids=["node offline", "node flagged", "site not online"],
)
def test_extending_on_unhealthy_hardware_is_refused(reservation, small_offer, buyer, soon, break_hardware):
    # given the reservation's node or site is no longer healthy
    break_hardware(small_offer)
    # when the buyer extends, then 409 saying why, and the end does not move
    with pytest.raises(BookingConflict, match="not online or is flagged"):
        reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)
    reservation.refresh_from_db()
    assert reservation.end == soon + timedelta(hours=4)


def test_extending_to_the_end_it_already_has_is_a_no_op(reservation, buyer, soon):
    # given a reservation extended to hour 6
    reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)
    changes = reservation.status_changes.count()
    # when the same extension is retried, then the reservation comes back unchanged, nothing written
    again = reservation_extend(reservation=reservation, end=soon + timedelta(hours=6), actor=buyer)
    assert again.end == soon + timedelta(hours=6) and reservation.status_changes.count() == changes


def test_an_extend_retry_through_the_api_answers_200(reservation, buyer_client, soon):
    # given an extension that succeeded
    url = f"/api/reservations/{reservation.pk}/extend/"
    body = {"end": (soon + timedelta(hours=6)).isoformat()}
    assert buyer_client.post(url, body, format="json").status_code == 200
    # when the client retries it, then 200 again with the same end (not a 400)
    retry = buyer_client.post(url, body, format="json")
    assert retry.status_code == 200, retry.content
    assert Reservation.objects.get(pk=reservation.pk).end == soon + timedelta(hours=6)
