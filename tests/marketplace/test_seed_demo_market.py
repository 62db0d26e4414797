import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from marketplace.models import Reservation


@pytest.mark.django_db
def test_demo_bookings_go_through_the_booking_service_for_every_demo_buyer():
    # Given the demo network
    call_command("seed_demo", cards=600, no_progress=True, verbosity=0)
    # When the demo bookings are made
    call_command("seed_demo_market", verbosity=0)
    # Then every demo buyer organization holds reservations, at locked prices, and no device is double-booked
    reservations = Reservation.objects.all()
    assert reservations.count() >= 8
    assert reservations.values("buyer").distinct().count() == 4
    assert reservations.filter(status="cancelled").count() == 1
    assert all(r.price_per_card_hour_minor > 0 for r in reservations)
    provider_sites = reservations.filter(cluster__site__owner__memberships__user__email="provider@demo.computeflow.test")
    assert provider_sites.exists()  # the demo provider's utilization panel has bookings to show
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM inventory_deviceallocation a JOIN inventory_deviceallocation b
               ON a.device_id = b.device_id AND a.id < b.id AND a.period && b.period
               WHERE a.is_active AND b.is_active"""
        )
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db
def test_demo_bookings_are_made_once():
    call_command("seed_demo", cards=400, no_progress=True, verbosity=0)
    call_command("seed_demo_market", verbosity=0)
    count = Reservation.objects.count()
    call_command("seed_demo_market", if_empty=True, verbosity=0)
    assert Reservation.objects.count() == count
    with pytest.raises(CommandError):
        call_command("seed_demo_market", verbosity=0)


@pytest.mark.django_db
def test_demo_bookings_need_the_demo_network_first():
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("seed_demo_market", verbosity=0)
