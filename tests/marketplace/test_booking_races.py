"""A booking that meets a writer it cannot see yet (a maintenance window or an extension, which do not
take the offer lock): the exclusion constraint decides, the booking never double-books, and it either
takes other devices or gives up with nothing left behind."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction

from inventory.allocations import device_allocations_create
from inventory.market_selectors import free_device_ids_for_booking
from inventory.models import DeviceAllocation
from marketplace.models import Reservation, ReservationStatusChange
from marketplace.services import BookingConflict, InsufficientCapacity, reservation_create
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member

OUTSIDE_RESERVATION_ID = 999_999
# Only a bound on a hung test: every wait below ends as soon as the database reaches the state waited for.
DEADLINE_SECONDS = 30


def _backend_pid() -> int:
    connection.ensure_connection()
    return connection.connection.get_backend_pid()


def _hold_uncommitted(*, device_id: int, start, end, holder_pid: list, held: threading.Event, release: threading.Event,
                      commit: bool):
    """On its own connection: allocate one device, wait, then commit or roll back."""
    try:
        with transaction.atomic():
            device_allocations_create(device_ids=[device_id], start=start, end=end, reservation_id=OUTSIDE_RESERVATION_ID)
            holder_pid.append(_backend_pid())
            held.set()
            release.wait(timeout=DEADLINE_SECONDS)
            if not commit:
                transaction.set_rollback(True)
    finally:
        connections.close_all()


def _release_once_blocked(*, waiter_pid: int, holder_pid: int, release: threading.Event, seen_blocked: threading.Event):
    """On its own connection: wait until PostgreSQL reports the booking's backend waiting for the holder's
    transaction (pg_blocking_pids), then let the holder end. The race is therefore the same every run:
    the booking has picked the held device and is inside its INSERT when the holder commits or rolls back."""
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT %s = ANY(pg_blocking_pids(%s))", [holder_pid, waiter_pid])
                if cursor.fetchone()[0]:
                    seen_blocked.set()
                    break
                time.sleep(0.005)
    finally:
        release.set()
        connections.close_all()


def _book_while_held(offer, *, cards: int, start, end, commit: bool):
    """The device the booking would pick first is allocated by another, uncommitted transaction, which
    ends (commit or rollback) exactly while the booking waits on it."""
    buyer = member(kind="buyer")  # before the race: hashing the password takes longer than anything below
    organization = buyer.memberships.get().organization
    first = free_device_ids_for_booking(cluster_id=offer.cluster_id, accelerator_model_id=offer.accelerator_model_id,
                                        start=start, end=end, limit=1)[0]
    held, release, seen_blocked = threading.Event(), threading.Event(), threading.Event()
    holder_pid: list[int] = []
    holder = threading.Thread(target=_hold_uncommitted, kwargs={
        "device_id": first, "start": start, "end": end, "holder_pid": holder_pid, "held": held, "release": release,
        "commit": commit})
    holder.start()
    assert held.wait(timeout=DEADLINE_SECONDS)
    releaser = threading.Thread(target=_release_once_blocked, kwargs={
        "waiter_pid": _backend_pid(), "holder_pid": holder_pid[0], "release": release, "seen_blocked": seen_blocked})
    releaser.start()
    try:
        return first, reservation_create(organization=organization, created_by=buyer, offer=offer, card_count=cards,
                                         start=start, end=end)
    finally:
        release.set()
        releaser.join(timeout=DEADLINE_SECONDS)
        holder.join(timeout=DEADLINE_SECONDS)
        # the scenario really happened: the booking waited on the holder (otherwise the test proves nothing)
        assert seen_blocked.is_set(), "the booking never waited for the uncommitted allocation"


@pytest.fixture
def two_node_offer(catalog):
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, hostname="race-a")
    NodeFactory(cluster=cluster, hostname="race-b")
    return OfferFactory(cluster=cluster)


@pytest.mark.django_db(transaction=True)
def test_a_device_taken_by_an_uncommitted_writer_is_replaced_by_another(two_node_offer, soon):
    # given another transaction holds (not yet committed) the device the booking would pick first
    # when 8 of the 16 cards are booked and that transaction commits meanwhile
    taken, (reservation, created) = _book_while_held(two_node_offer, cards=8, start=soon, end=soon + timedelta(hours=4),
                                                     commit=True)

    # then the booking has 8 other devices, and no device is allocated twice
    mine = set(DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).values_list("device_id", flat=True))
    assert created and len(mine) == 8 and taken not in mine
    assert DeviceAllocation.objects.filter(is_active=True).count() == 9
    assert DeviceAllocation.objects.filter(is_active=True, device_id=taken).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_device_released_by_a_rolled_back_writer_is_booked(two_node_offer, soon):
    # given the other transaction rolls back instead
    taken, (reservation, _) = _book_while_held(two_node_offer, cards=8, start=soon, end=soon + timedelta(hours=4),
                                               commit=False)

    # then the booking got the device it picked first
    mine = set(DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True).values_list("device_id", flat=True))
    assert len(mine) == 8 and taken in mine
    assert DeviceAllocation.objects.filter(is_active=True).count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_booking_short_of_cards_after_a_lost_race_leaves_nothing_behind(two_node_offer, soon):
    # given the booking wants all 16 cards and another transaction commits one of them meanwhile
    with pytest.raises(BookingConflict) as conflict:
        _book_while_held(two_node_offer, cards=16, start=soon, end=soon + timedelta(hours=4), commit=True)

    # then it is the race's conflict (not "too few cards": all 16 were free when it picked them), it says
    # how many are free now, and only the other writer's row remains
    assert not isinstance(conflict.value, InsufficientCapacity)
    assert "just booked by someone else" in conflict.value.message and conflict.value.cards_free == 15
    assert not Reservation.objects.exists() and not ReservationStatusChange.objects.exists()
    assert list(DeviceAllocation.objects.values_list("reservation_id", flat=True)) == [OUTSIDE_RESERVATION_ID]
