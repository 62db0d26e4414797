"""Many buyers racing for the same cards: exactly the capacity succeeds, nothing is double-booked."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

from inventory.models import DeviceAllocation
from marketplace.models import Reservation
from marketplace.services import BookingConflict, reservation_create
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, member

ATTEMPTS = 60
CARDS_PER_BOOKING = 4
NODES = 2  # 16 cards: room for exactly 4 bookings of 4 cards in any window that overlaps all others


@pytest.mark.django_db(transaction=True)
def test_sixty_concurrent_bookings_for_overlapping_windows_never_double_book(catalog, soon):
    # Given a 16-card cluster and 60 buyers whose windows all contain the hour [soon+3h, soon+4h)
    cluster = ClusterFactory()
    for i in range(NODES):
        NodeFactory(cluster=cluster, hostname=f"race-{i}")
    offer = OfferFactory(cluster=cluster)
    buyers = [member(kind="buyer") for _ in range(ATTEMPTS)]
    windows = [(soon + timedelta(hours=i % 3), soon + timedelta(hours=4 + i % 5)) for i in range(ATTEMPTS)]
    barrier = threading.Barrier(ATTEMPTS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int):
        try:
            barrier.wait()
            organization = buyers[i].memberships.get().organization
            start, end = windows[i]
            reservation_create(organization=organization, created_by=buyers[i], offer=offer,
                               card_count=CARDS_PER_BOOKING, start=start, end=end)
            result = "booked"
        except BookingConflict:
            result = "conflict"
        except Exception as error:  # noqa: BLE001 - any other outcome fails the test below
            result = f"error: {error!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(result)

    # When they all book at once, each thread on its own database connection
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then exactly as many succeed as the 16 cards allow, and every other buyer got the conflict
    assert sorted(set(outcomes)) == ["booked", "conflict"], outcomes
    assert outcomes.count("booked") == NODES * 8 // CARDS_PER_BOOKING
    assert outcomes.count("conflict") == ATTEMPTS - NODES * 8 // CARDS_PER_BOOKING
    assert Reservation.objects.count() == outcomes.count("booked")  # losers left no reservation behind
    assert DeviceAllocation.objects.filter(is_active=True).count() == NODES * 8
    # and a direct SQL self-join finds no device in two overlapping active allocations
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM inventory_deviceallocation a
            JOIN inventory_deviceallocation b ON a.device_id = b.device_id AND a.id < b.id
            WHERE a.is_active AND b.is_active AND a.period && b.period
            """
        )
        assert cursor.fetchone()[0] == 0
