"""Platform operators in the Django admin: find reservations, read their timelines, and cancel or release
them through the services with a required note, recorded as the operator. Other staff cannot."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from marketplace.reasons import ReasonCode
from marketplace.services import reservation_create
from tests.factories import UserFactory, member, staff_group
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/marketplace/reservation/"


def book(offer, user, start, hours=4, cards=8):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


@pytest.fixture
def operator(db):
    # an operator who is staff but not a superuser: the group alone must be enough
    user = UserFactory(is_staff=True)
    user.groups.add(staff_group("operator"))
    return user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def booking(small_offer, buyer, soon):
    return book(small_offer, buyer, soon)


def test_an_operator_lists_filters_and_searches_reservations(operator_client, booking, small_offer, soon):
    other = book(small_offer, member(kind="buyer"), soon + timedelta(days=2), cards=4)
    listed = operator_client.get(CHANGELIST)
    assert listed.status_code == 200
    assert f'value="{booking.pk}"' in listed.content.decode() and f'value="{other.pk}"' in listed.content.decode()
    # by status, by buyer, by provider, by id
    assert operator_client.get(CHANGELIST, {"status__exact": "cancelled"}).context["cl"].result_count == 0
    by_buyer = operator_client.get(CHANGELIST, {"buyer__id__exact": booking.buyer_id}).context["cl"]
    assert [r.pk for r in by_buyer.result_list] == [booking.pk]
    provider_id = small_offer.cluster.site.owner_id
    assert operator_client.get(CHANGELIST, {"cluster__site__owner__id__exact": provider_id}).context["cl"].result_count == 2
    assert [r.pk for r in operator_client.get(CHANGELIST, {"q": str(other.pk)}).context["cl"].result_list] == [other.pk]
    assert [r.pk for r in operator_client.get(CHANGELIST, {"q": booking.buyer.name}).context["cl"].result_list] == [booking.pk]


def test_an_operator_sees_a_reservations_timeline_read_only(operator_client, booking):
    response = operator_client.get(f"{CHANGELIST}{booking.pk}/change/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "Booked 8 cards at CNY 25.00 per card-hour." in body
    assert 'name="status"' not in body and "Save" not in body  # nothing to edit directly


def test_an_operator_cancels_through_the_action_with_a_note_recorded_as_the_operator(operator_client, operator, booking):
    # when the operator picks the cancel action, they are asked for a note first and nothing happens yet
    chosen = {"action": "cancel_reservations", "_selected_action": [booking.pk]}
    asked = operator_client.post(CHANGELIST, chosen)
    assert asked.status_code == 200 and "Why (the buyer sees this" in asked.content.decode()
    booking.refresh_from_db()
    assert booking.status == Reservation.Status.REQUESTED
    # an empty note is refused
    operator_client.post(CHANGELIST, {**chosen, "apply": "1", "reason": "   "})
    booking.refresh_from_db()
    assert booking.status == Reservation.Status.REQUESTED
    # when they give one, the service cancels it and frees its cards
    done = operator_client.post(CHANGELIST, {**chosen, "apply": "1", "reason": "Buyer asked by phone (ticket 7)"})
    assert done.status_code == 302
    booking.refresh_from_db()
    assert booking.status == Reservation.Status.CANCELLED
    assert not DeviceAllocation.objects.filter(reservation_id=booking.pk, is_active=True).exists()
    event = booking.status_changes.last()
    assert (event.actor, event.reason_code, event.reason_params) == (
        operator, ReasonCode.OPERATOR_CANCELLED, {"note": "Buyer asked by phone (ticket 7)"})


def test_an_action_the_lifecycle_does_not_allow_is_refused_and_changes_nothing(operator_client, booking):
    # releasing a reservation that has not started is the buyer's cancel, not a release
    operator_client.post(CHANGELIST, {"action": "release_reservations", "_selected_action": [booking.pk],
                                      "apply": "1", "reason": "Node failure"}, follow=True)
    booking.refresh_from_db()
    assert booking.status == Reservation.Status.REQUESTED and booking.status_changes.count() == 1


def test_an_operator_releases_a_running_reservation(operator_client, operator, small_offer, buyer):
    start = timezone.now() + timedelta(seconds=1)
    running = book(small_offer, buyer, start, hours=10)
    earlier = start - timedelta(hours=2)
    Reservation.objects.filter(pk=running.pk).update(start=earlier)
    DeviceAllocation.objects.filter(reservation_id=running.pk).update(period=(earlier, start + timedelta(hours=10)))
    hand_over(running)
    operator_client.post(CHANGELIST, {"action": "release_reservations", "_selected_action": [running.pk],
                                      "apply": "1", "reason": "Node failure, buyer agreed"})
    running.refresh_from_db()
    assert running.status == Reservation.Status.COMPLETED and running.released_at is not None
    event = running.status_changes.last()
    assert (event.actor, event.reason_code) == (operator, ReasonCode.OPERATOR_RELEASED)


def test_staff_who_are_not_operators_cannot_see_or_act_on_reservations(client, booking):
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{booking.pk}/change/").status_code == 403
    refused = client.post(CHANGELIST, {"action": "cancel_reservations", "_selected_action": [booking.pk],
                                       "apply": "1", "reason": "not mine to cancel"})
    assert refused.status_code == 403
    booking.refresh_from_db()
    assert booking.status == Reservation.Status.REQUESTED


@pytest.mark.parametrize("path", [
    "/admin/inventory/node/?flagged=yes&status__exact=online&q=h100",
    "/admin/inventory/offer/?is_active__exact=1&currency__exact=CNY",
    "/admin/inventory/site/?lifecycle__exact=online&q=Site",
    "/admin/inventory/maintenancewindow/?cancelled=no",
    "/admin/inventory/deviceallocation/?q=1",
])
def test_an_operator_browses_inventory_with_filters_and_search_but_cannot_change_it(operator_client, booking, path):
    response = operator_client.get(path)
    assert response.status_code == 200
    # no Add link for any inventory model (the sidebar may offer one for the launch templates operators maintain)
    assert "/admin/inventory/" not in "".join(
        line for line in response.content.decode().splitlines() if "/add/" in line)
