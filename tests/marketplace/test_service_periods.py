"""Service periods: active_from/active_to and segments written by the transition service with the
instant the caller observed; what a reservation is billed; allocation history; moving a reservation
to other devices (reservation_rehome) without losing any of it."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from inventory.allocations import device_allocations_create, reservation_device_intervals
from inventory.models import Device, DeviceAllocation, Node
from marketplace.models import Reservation, ReservationSegment
from marketplace.pricing import card_seconds_price_minor, total_price_minor
from marketplace.provisioning.services import reservation_provision
from marketplace.services import (
    BookingConflict,
    reservation_create,
    reservation_rehome,
    reservation_release,
    reservation_set_status,
    reservations_advance,
)
from tests.factories import ClusterFactory, NodeFactory, OfferFactory
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

PRICE = 2500  # small_offer's price per card-hour, in fen


def booked(offer, user, start, hours=4, cards=8):
    reservation, _ = reservation_create(
        organization=user.memberships.get().organization, created_by=user, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=hours),
    )
    return reservation


def held_devices(reservation, at):
    return sorted(DeviceAllocation.objects.filter(
        reservation_id=reservation.pk, is_active=True, period__endswith__gt=at
    ).values_list("device_id", flat=True))


def free_devices_of(offer):
    taken = DeviceAllocation.objects.filter(is_active=True).values_list("device_id", flat=True)
    return list(Device.objects.filter(node__cluster=offer.cluster).exclude(pk__in=taken).order_by("pk").values_list("pk", flat=True))


def activated(offer, user, soon, *, hours=4, cards=8, late=timedelta(minutes=7)):
    """A reservation whose nodes reported it running `late` after its start."""
    reservation = booked(offer, user, soon, hours=hours, cards=cards)
    hand_over(reservation, at=soon + late)
    assert reservation.status == Reservation.Status.ACTIVE
    return reservation


# --- active_from / active_to and segments --------------------------------------------------------------------------


def test_activation_records_the_instant_of_the_health_check_and_opens_a_segment_per_node(small_offer, buyer, soon):
    # given a 12-card booking (it spans both 8-card nodes)
    reservation = booked(small_offer, buyer, soon, cards=12)
    # when both nodes report the workload running 7 minutes after the start
    checked_at = soon + timedelta(minutes=7)
    hand_over(reservation, at=checked_at)
    # then service starts at that instant (not at the booked start, not at the wall clock of the write)
    assert reservation.active_from == checked_at and reservation.active_to is None
    segments = list(reservation.segments.order_by("node_id"))
    assert sum(len(s.device_ids) for s in segments) == 12 and len(segments) == 2
    assert {s.started_at for s in segments} == {checked_at} and {s.ended_at for s in segments} == {None}
    assert sorted(d for s in segments for d in s.device_ids) == held_devices(reservation, checked_at)
    provider = small_offer.cluster.site.owner_id
    assert {(s.provider_id, s.offer_id, s.price_per_card_hour_minor, s.currency) for s in segments} == {
        (provider, small_offer.pk, PRICE, reservation.currency)
    }


def test_completion_closes_the_segments_at_the_end_of_the_period_however_late_beat_runs(small_offer, buyer, soon):
    # given an active reservation (handed over 7 minutes late)
    reservation = activated(small_offer, buyer, soon)
    # when beat notices the end an hour after it
    reservations_advance(now=reservation.end + timedelta(hours=1))
    # then service ended at the end, and the bill is the active time: 3h53m of 8 cards
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.COMPLETED and reservation.active_to == reservation.end
    assert set(reservation.segments.values_list("ended_at", flat=True)) == {reservation.end}
    active_seconds = int((reservation.end - (soon + timedelta(minutes=7))).total_seconds())
    assert reservation.billed_price_minor == card_seconds_price_minor([(PRICE, 8 * active_seconds)])
    assert reservation.total_price_minor == PRICE * 8 * 4 - PRICE * 8 * 7 // 60


def test_a_move_to_active_without_the_instant_is_refused(small_offer, buyer, soon):
    # given a reservation in provisioning
    reservation = booked(small_offer, buyer, soon)
    reservation = reservation_set_status(reservation=reservation, status=Reservation.Status.PROVISIONING)
    # when something turns it active without saying when the cards were healthy
    # then it is refused and nothing changed
    with pytest.raises(ValueError, match="needs `at`"):
        reservation_set_status(reservation=reservation, status=Reservation.Status.ACTIVE)
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.PROVISIONING and not reservation.segments.exists()


def test_two_open_segments_of_one_reservation_on_one_node_are_refused_by_the_database(small_offer, buyer, soon):
    # given an active reservation with its open segment
    reservation = activated(small_offer, buyer, soon)
    segment = reservation.segments.get()
    # when a second segment of the same node overlapping it is written
    # then PostgreSQL refuses it (no device billed twice for the same instant)
    with pytest.raises(IntegrityError, match="reservation_segment_no_overlap"), transaction.atomic():
        ReservationSegment.objects.create(
            reservation=reservation, node_id=segment.node_id, device_ids=segment.device_ids[:1], provider_id=segment.provider_id,
            offer_id=segment.offer_id, started_at=segment.started_at + timedelta(hours=1), ended_at=None,
            price_per_card_hour_minor=PRICE, currency=segment.currency,
        )


# --- what is billed ----------------------------------------------------------------------------------------------


def test_a_reservation_that_failed_its_health_check_costs_nothing(small_offer, buyer, soon):
    # given a booking whose nodes are offline when it should start (it used to report the booked window's price)
    reservation = booked(small_offer, buyer, soon, hours=2, cards=8)
    assert reservation.total_price_minor == PRICE * 8 * 2 and reservation.price_is_estimate
    Node.objects.filter(cluster=small_offer.cluster).update(status=Node.Status.OFFLINE)
    # when its start comes and provisioning checks the hardware
    reservation_provision(reservation.pk, now=soon + timedelta(minutes=1))
    # then it failed with nothing to pay and no service period
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.FAILED
    assert reservation.total_price_minor == 0 and not reservation.price_is_estimate
    assert reservation.active_from is None and not reservation.segments.exists()
    # (the estimate for the booked window is still there, named as one)
    assert reservation.estimated_price_minor == PRICE * 8 * 2


def test_an_active_reservation_that_fails_bills_only_its_service_time(small_offer, buyer, soon):
    # given a reservation active since 7 minutes after its start
    reservation = activated(small_offer, buyer, soon)
    # when the hardware fails an hour later (a failover that found nothing, later)
    failed_at = soon + timedelta(hours=1, minutes=7)
    reservation = reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED, at=failed_at)
    # then the open segment closed at that instant and a failed reservation is rated zero
    assert reservation.active_to == failed_at and reservation.segments.get().ended_at == failed_at
    assert reservation.total_price_minor == 0


def test_a_bill_over_several_segments_is_rounded_once():
    # given two segments of one card each, 1 second at 1 fen per card-hour (1/3600 fen each)
    parts = [(1, 1800), (1, 1800)]
    # then the total is rounded once (half a fen each, one fen together), never per segment (0 + 0 or 1 + 1)
    assert card_seconds_price_minor(parts) == 1
    # and the booked-window estimate goes through the same rule
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert total_price_minor(price_per_card_hour_minor=1, card_count=1, start=start, end=start + timedelta(seconds=1800)) == 1


# --- allocation history ----------------------------------------------------------------------------------------


def test_an_early_release_keeps_the_booked_period_and_says_when_and_why(small_offer, buyer):
    # given an 8-card reservation booked for 10 hours that started two hours ago and is active
    start = timezone.now() + timedelta(seconds=1)
    reservation = booked(small_offer, buyer, start, hours=10)
    began, booked_end = start - timedelta(hours=2), start + timedelta(hours=10)
    Reservation.objects.filter(pk=reservation.pk).update(start=began)  # the clock cannot be moved: the booking is
    DeviceAllocation.objects.filter(reservation_id=reservation.pk).update(period=(began, booked_end), booked_period=(began, booked_end))
    hand_over(reservation)
    # when the buyer releases it now
    reservation = reservation_release(reservation=reservation, actor=buyer)
    # then each row's effective period ends at the release, and the booking, the instant and the reason are kept
    rows = list(DeviceAllocation.objects.filter(reservation_id=reservation.pk))
    assert len(rows) == 8 and all(r.is_active for r in rows)
    assert {r.period.upper for r in rows} == {reservation.released_at}
    assert {r.booked_period for r in rows} == {DateTimeTZRange(began, booked_end, "[)")}
    assert {(r.released_at, r.release_reason) for r in rows} == {(reservation.released_at, DeviceAllocation.ReleaseReason.RELEASED_EARLY)}
    assert reservation.active_to == reservation.released_at


def test_which_device_served_which_interval_is_answered_from_the_allocations(small_offer, buyer, soon):
    # given an active 8-card reservation moved at +1h to the other node's 8 cards
    reservation = activated(small_offer, buyer, soon)
    first = held_devices(reservation, soon)
    moved_at = soon + timedelta(hours=1)
    second = free_devices_of(small_offer)[:8]
    reservation_rehome(reservation=reservation, to_device_ids=second, at=moved_at)
    # when we ask which device served which interval
    intervals = reservation_device_intervals(reservation_id=reservation.pk)
    # then the first devices held it until the move, the second ones from then to the end
    by_device = {i.device_id: (i.start, i.end, i.release_reason) for i in intervals}
    assert {d: by_device[d] for d in first} == {d: (soon, moved_at, "rehomed") for d in first}
    assert {d: by_device[d] for d in second} == {d: (moved_at, reservation.end, "") for d in second}
    assert {(i.booked_start, i.booked_end) for i in intervals if i.device_id in first} == {(soon, reservation.end)}


# --- lifecycle: migrating and reservation_rehome -----------------------------------------------------------------


def test_a_reservation_still_migrating_at_its_end_completes(small_offer, buyer, soon):
    # given a reservation moved to other devices that never reported healthy
    reservation = activated(small_offer, buyer, soon)
    reservation_rehome(reservation=reservation, to_device_ids=free_devices_of(small_offer)[:8], at=soon + timedelta(hours=1))
    # when its period ends
    reservations_advance(now=reservation.end + timedelta(minutes=1))
    # then it completed (it used to stay migrating forever) and only the time before the move is billed
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.COMPLETED and reservation.active_to == reservation.end
    served = int((timedelta(minutes=53)).total_seconds())
    assert reservation.total_price_minor == card_seconds_price_minor([(PRICE, 8 * served)])


def test_rehome_within_the_cluster_keeps_history_and_bills_the_gap_as_nothing(small_offer, buyer, soon):
    # given an active reservation on one node's 8 cards
    reservation = activated(small_offer, buyer, soon)
    old = held_devices(reservation, soon)
    new = free_devices_of(small_offer)[:8]
    moved_at = soon + timedelta(hours=1)
    # when it is moved at +1h and the new devices report healthy 5 minutes later
    reservation = reservation_rehome(reservation=reservation, to_device_ids=new, at=moved_at)
    assert reservation.status == Reservation.Status.MIGRATING
    healthy_at = moved_at + timedelta(minutes=5)
    reservation = reservation_set_status(
        reservation=reservation, status=Reservation.Status.ACTIVE, reason_code="rehomed_healthy", at=healthy_at
    )
    # then the old segment ended at the move, the new one began when healthy, active_from kept the first instant
    segments = list(reservation.segments.order_by("started_at"))
    assert [(sorted(s.device_ids), s.started_at, s.ended_at) for s in segments] == [
        (old, soon + timedelta(minutes=7), moved_at), (new, healthy_at, None)
    ]
    assert reservation.active_from == soon + timedelta(minutes=7)
    # the old allocations are truncated, not overwritten: booked period, instant and reason kept
    old_rows = DeviceAllocation.objects.filter(reservation_id=reservation.pk, device_id__in=old)
    assert {(r.period.upper, r.booked_period.upper, r.released_at, r.release_reason) for r in old_rows} == {
        (moved_at, reservation.end, moved_at, "rehomed")
    }
    assert held_devices(reservation, moved_at) == new
    # and the old devices are free again after the move (another booking may take them)
    assert not DeviceAllocation.objects.filter(device_id__in=old, is_active=True, period__overlap=(moved_at, reservation.end)).exists()


def test_rehome_to_another_cluster_and_provider_moves_the_offer_and_keeps_the_locked_price(small_offer, buyer, soon, catalog):
    # given an active reservation, and another provider's cluster of the same model at a higher price
    reservation = activated(small_offer, buyer, soon)
    other_cluster = ClusterFactory()
    NodeFactory(cluster=other_cluster, hostname="other-a")
    other_offer = OfferFactory(cluster=other_cluster, price_per_card_hour_minor=9900)
    target = free_devices_of(other_offer)[:8]
    # when it moves there at +2h and the new devices are healthy at once
    moved_at = soon + timedelta(hours=2)
    reservation_rehome(reservation=reservation, to_device_ids=target, at=moved_at, offer=other_offer)
    reservation = reservation_set_status(reservation=reservation, status=Reservation.Status.ACTIVE, at=moved_at)
    # then the reservation is on the other offer, its new segment names the other provider, at the booked price
    assert (reservation.offer_id, reservation.cluster_id) == (other_offer.pk, other_cluster.pk)
    new_segment = reservation.segments.get(ended_at__isnull=True)
    assert new_segment.provider_id == other_cluster.site.owner_id != small_offer.cluster.site.owner_id
    assert (new_segment.offer_id, new_segment.price_per_card_hour_minor) == (other_offer.pk, PRICE)
    assert sorted(new_segment.device_ids) == target
    assert reservation.segments.get(ended_at=moved_at).offer_id == small_offer.pk


def test_rehome_onto_devices_just_booked_by_someone_else_is_refused_and_changes_nothing(small_offer, buyer, soon):
    # given an active reservation, and the other node's cards booked meanwhile by a concurrent writer
    reservation = activated(small_offer, buyer, soon)
    target = free_devices_of(small_offer)[:8]
    device_allocations_create(device_ids=target[:1], start=soon + timedelta(hours=1), end=soon + timedelta(hours=2),
                              reservation_id=reservation.pk + 1000)
    before_rows = sorted(DeviceAllocation.objects.filter(reservation_id=reservation.pk).values_list(
        "device_id", "period", "released_at", "release_reason"))
    before_segments = list(reservation.segments.values_list("node_id", "started_at", "ended_at"))
    # when it is moved onto them
    with pytest.raises(BookingConflict):
        reservation_rehome(reservation=reservation, to_device_ids=target, at=soon + timedelta(hours=1))
    # then nothing changed: same status, same allocations, same segments, no event
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.ACTIVE
    assert sorted(DeviceAllocation.objects.filter(reservation_id=reservation.pk).values_list(
        "device_id", "period", "released_at", "release_reason")) == before_rows
    assert list(reservation.segments.values_list("node_id", "started_at", "ended_at")) == before_segments
    assert not reservation.status_changes.filter(reason_code="rehomed").exists()


def test_the_api_names_an_estimate_as_one_and_shows_the_service_period(small_offer, buyer, buyer_client, soon):
    # given a booking not yet started, and one active since 7 minutes after its start
    upcoming = booked(small_offer, buyer, soon + timedelta(days=1))
    active = activated(small_offer, buyer, soon)
    # when the buyer reads them
    first = buyer_client.get(f"/api/reservations/{upcoming.pk}/").json()
    second = buyer_client.get(f"/api/reservations/{active.pk}/").json()
    # then the upcoming one's price is the booked window's estimate, the active one's is billed from its start of service
    assert (first["price_is_estimate"], first["total_price_minor"], first["active_from"]) == (True, PRICE * 8 * 4, None)
    assert second["price_is_estimate"] is False and second["active_from"] is not None and second["active_to"] is None
    assert second["total_price_minor"] == active.total_price_minor


def test_a_cancelled_booking_keeps_when_and_why_its_devices_were_released(small_offer, buyer, soon):
    from marketplace.services import reservation_cancel

    # given a booking
    reservation = booked(small_offer, buyer, soon)
    # when the buyer cancels it
    reservation_cancel(reservation=reservation, actor=buyer)
    # then its rows are released with the instant and the reason, their booked period intact, and it held nothing
    rows = list(DeviceAllocation.objects.filter(reservation_id=reservation.pk))
    assert len(rows) == 8 and not any(r.is_active for r in rows)
    assert {r.release_reason for r in rows} == {"cancelled"} and all(r.released_at < soon for r in rows)
    assert {r.booked_period.upper for r in rows} == {soon + timedelta(hours=4)}
    assert reservation_device_intervals(reservation_id=reservation.pk) == []


@pytest.mark.django_db
def test_reservations_served_before_service_periods_existed_get_them_from_the_backfill_migration(small_offer, buyer, soon):
    import importlib

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    backfill = importlib.import_module("marketplace.migrations.0007_backfill_service_periods")
    # given an active reservation as a database migrated before 0004 holds it: no active period, no segments
    reservation = activated(small_offer, buyer, soon)
    ReservationSegment.objects.filter(reservation=reservation).delete()
    Reservation.objects.filter(pk=reservation.pk).update(active_from=None, active_to=None)
    assert Reservation.objects.get(pk=reservation.pk).total_price_minor == 0
    # when the backfill runs
    state = MigrationExecutor(connection).loader.project_state(("marketplace", "0007_backfill_service_periods"))
    backfill.backfill(state.apps, connection.schema_editor())
    # then it has its active period from the status change and one open segment per node of its cards
    reservation = Reservation.objects.get(pk=reservation.pk)
    assert reservation.active_from is not None and reservation.active_to is None
    [segment] = ReservationSegment.objects.filter(reservation=reservation)
    assert (segment.started_at, segment.ended_at, len(segment.device_ids)) == (reservation.active_from, None, 8)
    assert segment.price_per_card_hour_minor == reservation.price_per_card_hour_minor
    # and running it again adds nothing
    backfill.backfill(state.apps, connection.schema_editor())
    assert ReservationSegment.objects.filter(reservation=reservation).count() == 1
