"""Bookings from many clients at once, through the real service (marketplace.services.reservation_create).

32 threads, each with its own database connection, book small reservations (2 cards for a day) on
distinct offers, each thread on its own offer and each booking in its own window far beyond the
seeded calendar, so no two bookings compete for a device: the figure is the throughput of the
booking path itself (offer lock, device picking, reservation row, allocations under the exclusion
constraint, audit row, commit). A fixed number of bookings, with a time limit.

The baseline is the same 32 threads doing a bare INSERT + COMMIT into a temporary table: what the
database and this machine can commit at all from 32 connections.

The bookings are deleted afterwards (allocations, reservations, audit rows), so runs do not pile up.
Also timed: one 1,024-card booking of the largest offer (rolled back), device picking included.
"""

import threading
import time
from datetime import timedelta

from django.db.models import F, Q, Sum

CLIENTS = 32
BOOKINGS_PER_CLIENT = 25
CARDS_PER_BOOKING = 2
TIME_LIMIT_S = 120
# Far beyond the seeded calendar (the bench allocations reach ~120 days ahead), inside the 10-year horizon.
FIRST_WINDOW_DAYS_AHEAD = 400


def _threads(work, clients: int) -> tuple[float, int, list[BaseException]]:
    """Run work(client_index, deadline) in `clients` threads; returns (seconds, operations, errors)."""
    from django.db import connections

    barrier = threading.Barrier(clients + 1)
    done = [0] * clients
    errors: list[BaseException] = []
    deadline_box = {}

    def body(index: int) -> None:
        try:
            connections["default"].ensure_connection()  # connecting is not part of the figure
            barrier.wait()
            done[index] = work(index, deadline_box["deadline"])
        except BaseException as error:  # noqa: BLE001 - reported below, never swallowed
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline_box["deadline"] = time.monotonic() + TIME_LIMIT_S
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(done), errors


def run() -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Organization
    from bench.harness import measure, rate
    from inventory.allocations import device_allocations_release
    from inventory.models import DeviceAllocation, Offer, Site
    from marketplace.models import Reservation
    from marketplace.services import reservation_create

    buyer = Organization.objects.filter(kind__in=[Organization.Kind.BUYER, Organization.Kind.BOTH]).order_by("id").first()
    offers = list(
        Offer.objects.filter(is_active=True, cluster__site__lifecycle=Site.Lifecycle.ONLINE,
                             min_duration_hours__lte=24, max_duration_hours__gte=24, rentable_period__isnull=True)
        .order_by("id")[:CLIENTS]
    )
    if buyer is None or len(offers) < CLIENTS:
        print(f"needs a buyer and {CLIENTS} bookable offers; found {len(offers)} offers", flush=True)
        return
    base = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=FIRST_WINDOW_DAYS_AHEAD)
    created: list[int] = []
    created_lock = threading.Lock()

    def insert_commit(index: int, deadline: float) -> int:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_commit (client int, n int, at timestamptz)")
        for n in range(BOOKINGS_PER_CLIENT):
            if time.monotonic() > deadline:
                return n
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_commit VALUES (%s, %s, now())", [index, n])
        return BOOKINGS_PER_CLIENT

    def book(index: int, deadline: float) -> int:
        offer = offers[index]
        for n in range(BOOKINGS_PER_CLIENT):
            if time.monotonic() > deadline:
                return n
            start = base + timedelta(days=n)
            reservation, _ = reservation_create(organization=buyer, created_by=None, offer=offer,
                                                card_count=CARDS_PER_BOOKING, start=start, end=start + timedelta(days=1))
            with created_lock:
                created.append(reservation.pk)
        return BOOKINGS_PER_CLIENT

    try:
        seconds, count, errors = _threads(insert_commit, CLIENTS)
        baseline = rate(f"baseline: {CLIENTS} clients, bare INSERT + COMMIT", count, seconds)
        seconds, count, errors = _threads(book, CLIENTS)
        for error in errors[:3]:
            print(f"  booking error: {error!r}", flush=True)
        rate(f"bookings, {CLIENTS} clients, {CARDS_PER_BOOKING} cards each (reservation_create)", count, seconds,
             baseline=baseline, target_per_second=200, note=f"{len(errors)} errors")
        booked = DeviceAllocation.objects.filter(reservation_id__in=created, is_active=True).count()
        print(f"  {len(created)} reservations, {booked} active allocations "
              f"({'as expected' if booked == len(created) * CARDS_PER_BOOKING else 'UNEXPECTED'})", flush=True)
    finally:
        for reservation_id in created:
            device_allocations_release(reservation_id=reservation_id, at=timezone.now(), reason="cancelled")
        DeviceAllocation.objects.filter(reservation_id__in=created).delete()
        Reservation.objects.filter(pk__in=created).delete()

    largest = (
        Offer.objects.filter(is_active=True, cluster__site__lifecycle=Site.Lifecycle.ONLINE, max_duration_hours__gte=24)
        .annotate(cards=Sum("cluster__nodes__card_count", filter=Q(cluster__nodes__accelerator_model=F("accelerator_model"))))
        .order_by("-cards")
        .first()
    )
    start = base + timedelta(days=BOOKINGS_PER_CLIENT + 1)

    def book_1024_rolled_back():
        with transaction.atomic():
            reservation_create(organization=buyer, created_by=None, offer=largest, card_count=1024,
                               start=start, end=start + timedelta(hours=max(24, largest.min_duration_hours)))
            transaction.set_rollback(True)

    baseline_1024 = measure(
        "baseline: bare INSERT of 1,024 rows (rolled back)",
        lambda: _insert_rows_rolled_back(1024), runs=10, warmup=2,
    )
    measure(f"booking 1,024 cards of a {largest.cards:,}-card offer (rolled back)", book_1024_rolled_back,
            runs=10, warmup=2, baseline=baseline_1024)


def _insert_rows_rolled_back(rows: int) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_rows (n int, at timestamptz)")
        cursor.execute("INSERT INTO bench_rows SELECT g, now() FROM generate_series(1, %s) g", [rows])
        transaction.set_rollback(True)
