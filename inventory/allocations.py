"""The device calendar: which devices are free in a period, and booking / releasing them.

Every booking and every maintenance blackout is a set of DeviceAllocation rows. PostgreSQL's
exclusion constraint (device_allocation_no_overlap) refuses an active row that overlaps another
active row of the same device, so a lost race surfaces here as AllocationConflict - never as a
double booking. Callers (marketplace reservations, maintenance windows) run these inside their
own transaction so that a conflict leaves nothing behind.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.fields import DateTimeRangeField
from django.db import IntegrityError, connection, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Case, Count, DateTimeField, Exists, F, Func, Max, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.models import Device, DeviceAllocation, MaintenanceWindow, Node, Site

EXCLUSION_CONSTRAINT = "device_allocation_no_overlap"


class AllocationConflict(Exception):
    """Some of the devices are already allocated for an overlapping period."""


def period_range(start: datetime, end: datetime) -> DateTimeTZRange:
    """The half-open period [start, end)."""
    return DateTimeTZRange(start, end, "[)")


def rentable_devices() -> QuerySet[Device]:
    """Devices that may be put on the market at all: node online and not flagged, site online."""
    return Device.objects.filter(
        node__status=Node.Status.ONLINE,
        node__mismatch_reason="",
        node__cluster__site__lifecycle=Site.Lifecycle.ONLINE,
    )


def overlapping_allocations(*, start: datetime, end: datetime) -> QuerySet[DeviceAllocation]:
    return DeviceAllocation.objects.filter(is_active=True, period__overlap=period_range(start, end))


def devices_free(*, start: datetime, end: datetime, devices: QuerySet[Device] | None = None) -> QuerySet[Device]:
    """Of `devices` (default: all rentable ones), those with no active allocation overlapping [start, end)."""
    devices = rentable_devices() if devices is None else devices
    busy = overlapping_allocations(start=start, end=end).filter(device=OuterRef("pk"))
    return devices.filter(~Exists(busy))


@dataclass(frozen=True)
class BookingsAhead:
    """Reservations that still hold some cards: how many, and when the last of them ends."""

    reservations: int
    last_end: datetime | None

    def __bool__(self) -> bool:
        return self.reservations > 0


def bookings_ahead(
    *,
    cluster_ids: list[int],
    accelerator_model_id: int | None = None,
    node_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
) -> BookingsAhead:
    """The confirmed reservations (active booking allocations) on these clusters' cards - optionally
    only one model's (an offer) or one node's - that are not over yet, or with start/end only those
    overlapping [start, end).

    Cancelled and failed reservations have released their allocations and a reservation released
    early was truncated, so an active allocation whose period has not ended is a buyer's promise.
    One aggregate over the allocation_offer_busy index (its leading columns are cluster and model).
    """
    allocations = DeviceAllocation.objects.filter(
        is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION, cluster_id__in=cluster_ids,
        period__endswith__gt=now or timezone.now(),
    )
    if accelerator_model_id is not None:
        allocations = allocations.filter(accelerator_model_id=accelerator_model_id)
    if node_id is not None:
        allocations = allocations.filter(node_id=node_id)
    if start is not None and end is not None:
        allocations = allocations.filter(period__overlap=period_range(start, end))
    totals = allocations.aggregate(
        reservations=Count("reservation_id", distinct=True),
        last_end=Max(Func(F("period"), function="upper", output_field=DateTimeField())),
    )
    return BookingsAhead(reservations=totals["reservations"], last_end=totals["last_end"])


def device_allocations_create(
    *,
    device_ids: list[int],
    start: datetime,
    end: datetime,
    reservation_id: int | None = None,
    maintenance_window: MaintenanceWindow | None = None,
) -> list[DeviceAllocation]:
    """Allocate each device for [start, end) to a reservation (by id) or a maintenance window.

    Raises AllocationConflict (and inserts nothing) when any device is already taken.
    """
    purpose = DeviceAllocation.Purpose.RESERVATION if reservation_id is not None else DeviceAllocation.Purpose.MAINTENANCE
    wanted = sorted(set(device_ids))
    # Each row carries its device's node, cluster and model (see DeviceAllocation.node): one
    # indexed lookup for the whole batch. They never change, so copying them here is safe.
    placement = {
        device_id: (node_id, cluster_id, model_id)
        for device_id, node_id, cluster_id, model_id in Device.objects.filter(pk__in=wanted).values_list(
            "id", "node_id", "node__cluster_id", "node__accelerator_model_id"
        )
    }
    missing = [device_id for device_id in wanted if device_id not in placement]
    if missing:
        raise ValueError(f"Unknown devices: {missing[:10]}")
    rows = [
        DeviceAllocation(
            device_id=device_id,
            node_id=placement[device_id][0],
            cluster_id=placement[device_id][1],
            accelerator_model_id=placement[device_id][2],
            period=period_range(start, end),
            booked_period=period_range(start, end),
            purpose=purpose,
            reservation_id=reservation_id,
            maintenance_window=maintenance_window,
        )
        for device_id in wanted
    ]
    try:
        with transaction.atomic():
            return DeviceAllocation.objects.bulk_create(rows)
    except IntegrityError as error:
        if EXCLUSION_CONSTRAINT in str(error):
            raise AllocationConflict("Some of these devices are already booked or in maintenance for that time.") from error
        raise


# The offer's free devices, picked as inventory.market_selectors.free_device_ids_for_booking picks them,
# inserted with their offer key in the same statement. ON CONFLICT DO NOTHING makes the exclusion
# constraint the arbiter: a device someone else took since the snapshot (or still holds, uncommitted:
# the insert waits for that transaction) is skipped instead of aborting the transaction.
_BOOK_FREE_DEVICES_SQL = """
WITH free AS MATERIALIZED ({free_devices}),
allocated AS (
    INSERT INTO inventory_deviceallocation (period, booked_period, purpose, reservation_id, is_active, released_at,
                                            release_reason, created_at, device_id, node_id, cluster_id,
                                            accelerator_model_id)
    SELECT %(window)s, %(window)s, %(purpose)s, %(reservation_id)s, true, NULL, '', %(now)s, free.id, free.node_id, %(cluster_id)s, %(model_id)s
    FROM free
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM free), (SELECT count(*) FROM allocated)
"""


def device_allocations_book(
    *, cluster_id: int, accelerator_model_id: int, start: datetime, end: datetime, card_count: int, reservation_id: int
) -> tuple[int, int]:
    """Allocate up to `card_count` free devices of one offer (cluster, model) for [start, end) to a
    reservation, in one statement: no device list travels to Python and back.

    Returns (free, allocated): how many free devices were found (at most card_count) and how many of
    them were allocated. Fewer allocated than found means someone took some of them meanwhile; the
    caller may call again for the rest (a new statement sees what they committed). Never raises
    AllocationConflict and never leaves the transaction aborted; run it in the caller's transaction.
    """
    from inventory.market_selectors import _FREE_DEVICES_SQL  # imports this module: import here

    with connection.cursor() as cursor:
        cursor.execute(
            _BOOK_FREE_DEVICES_SQL.format(free_devices=_FREE_DEVICES_SQL),
            {
                "cluster_id": cluster_id,
                "model_id": accelerator_model_id,
                "window": period_range(start, end),
                "limit": card_count,
                "purpose": DeviceAllocation.Purpose.RESERVATION.value,
                "reservation_id": reservation_id,
                "now": timezone.now(),
            },
        )
        free, allocated = cursor.fetchone()
    return free, allocated


def device_allocations_release(
    *,
    reservation_id: int | None = None,
    maintenance_window: MaintenanceWindow | None = None,
    at: datetime,
    reason: str,
) -> int:
    """Mark a reservation's or a window's allocations released at `at` for `reason` (a
    DeviceAllocation.ReleaseReason), kept for history. Idempotent: released rows are left as they are."""
    if (reservation_id is None) == (maintenance_window is None):
        raise ValueError("Give exactly one of reservation_id or maintenance_window.")
    allocations = DeviceAllocation.objects.filter(is_active=True)
    if reservation_id is not None:
        allocations = allocations.filter(reservation_id=reservation_id)
    else:
        allocations = allocations.filter(maintenance_window=maintenance_window)
    return allocations.update(
        is_active=False, released_at=Coalesce(F("released_at"), Value(at)), release_reason=_first_reason(reason)
    )


def _first_reason(reason: str):
    """Keep the reason of the first release or truncation (a released-early row later failed stays released_early)."""
    if reason not in DeviceAllocation.ReleaseReason.values:
        raise ValueError(f"Unknown release reason {reason!r}: add it to DeviceAllocation.ReleaseReason.")
    return Case(When(release_reason="", then=Value(reason)), default=F("release_reason"))


def device_allocations_for_reservation(*, reservation_id: int) -> QuerySet[DeviceAllocation]:
    """A reservation's active calendar rows (one per device per booked segment)."""
    return DeviceAllocation.objects.filter(reservation_id=reservation_id, is_active=True).order_by("device_id", "period")


def reservation_devices_unhealthy(*, reservation_id: int, at: datetime | None = None) -> int:
    """How many of a reservation's allocated devices cannot be handed over now: their node is not
    online or is flagged by its agent (mismatch_reason set), or their site is not online.

    One query for the whole reservation (each allocation row carries its node and cluster), never
    one per device. 0 means every device passes the health check. Only rows still running at `at`
    (default now) count: devices a reservation was moved away from are not its devices any more.
    """
    return (
        DeviceAllocation.objects.filter(reservation_id=reservation_id, is_active=True, period__endswith__gt=at or timezone.now())
        .filter(
            ~Q(node__status=Node.Status.ONLINE)
            | ~Q(node__mismatch_reason="")
            | ~Q(cluster__site__lifecycle=Site.Lifecycle.ONLINE)
        )
        .values("device_id")
        .distinct()
        .count()
    )


def device_allocations_truncate(
    *, reservation_id: int, end: datetime, reason: str, device_ids: list[int] | None = None
) -> int:
    """Shrink a reservation's active allocations (only those of `device_ids`, if given) so none runs
    past `end`: an early release, or a move to other devices from `end` on.

    Rows that start at or after `end` are released; rows that straddle it keep [start, end) as their
    effective `period`. Either way `booked_period` keeps what was booked and `released_at` /
    `release_reason` say when and why. Shrinking never overlaps anything, so the exclusion constraint
    cannot object. Idempotent: a second call with the same `end` changes nothing. Returns the rows changed.
    """
    rows = DeviceAllocation.objects.filter(reservation_id=reservation_id, is_active=True)
    if device_ids is not None:
        rows = rows.filter(device_id__in=device_ids)
    stamp = {"released_at": Coalesce(F("released_at"), Value(end)), "release_reason": _first_reason(reason)}
    with transaction.atomic():
        released = rows.filter(period__startswith__gte=end).update(is_active=False, **stamp)
        truncated = rows.filter(period__endswith__gt=end).update(
            period=Func(Func(F("period"), function="lower"), Value(end), Value("[)"), function="tstzrange",
                        output_field=DateTimeRangeField()),
            **stamp,
        )
    return released + truncated


def reservation_periods_sql(*, device_ids: str, span: str) -> str:
    """SQL selecting (device_id, period, reservation_id) of the active reservation allocations of the
    devices in the SQL array expression `device_ids` that overlap the tstzrange expression `span`.

    For set-based callers that join the calendar inside one statement of their own (metering
    attributes a whole batch of usage samples in its INSERT); the table's rules stay here. The
    exclusion constraint guarantees at most one such period per device and instant.
    """
    return (
        "SELECT device_id, period, reservation_id FROM inventory_deviceallocation "  # noqa: S608 - the caller's SQL expressions, never input
        f"WHERE device_id = ANY({device_ids}) AND is_active AND purpose = 'reservation' AND period && {span}"
    )


@dataclass(frozen=True)
class DeviceInterval:
    device_id: int
    node_id: int
    start: datetime
    end: datetime
    booked_start: datetime
    booked_end: datetime
    released_at: datetime | None
    release_reason: str


def reservation_device_intervals(*, reservation_id: int) -> list[DeviceInterval]:
    """Which device held the reservation for which interval, from the allocation history: every row of
    the reservation, with its effective period cut at its release (a cancelled or failed booking held
    its devices only until it was released). Empty intervals (released before they began) are left out.
    Ordered by start, then device."""
    intervals = []
    rows = DeviceAllocation.objects.filter(reservation_id=reservation_id).order_by("period", "device_id")
    for row in rows:
        start, end = row.period.lower, row.period.upper
        if not row.is_active and row.released_at is not None:
            end = min(end, row.released_at)
        if start < end:
            intervals.append(DeviceInterval(
                device_id=row.device_id, node_id=row.node_id, start=start, end=end,
                booked_start=row.booked_period.lower, booked_end=row.booked_period.upper,
                released_at=row.released_at, release_reason=row.release_reason,
            ))
    return sorted(intervals, key=lambda i: (i.start, i.device_id))


def reservations_per_node(*, node_ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """Per node id: how many reservations still hold cards on it (allocations not over). One query."""
    if not node_ids:
        return {}
    rows = (
        DeviceAllocation.objects.filter(
            node_id__in=node_ids, is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION,
            period__endswith__gt=now or timezone.now(),
        )
        .values("node_id").annotate(reservations=Count("reservation_id", distinct=True))
    )
    return {row["node_id"]: row["reservations"] for row in rows}
