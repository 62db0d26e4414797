"""The device calendar: which devices are free in a period, and booking / releasing them.

Every booking and every maintenance blackout is a set of DeviceAllocation rows. PostgreSQL's
exclusion constraint (device_allocation_no_overlap) refuses an active row that overlaps another
active row of the same device, so a lost race surfaces here as AllocationConflict - never as a
double booking. Callers (marketplace reservations, maintenance windows) run these inside their
own transaction so that a conflict leaves nothing behind.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Exists, OuterRef, QuerySet

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
    rows = [
        DeviceAllocation(
            device_id=device_id,
            period=period_range(start, end),
            purpose=purpose,
            reservation_id=reservation_id,
            maintenance_window=maintenance_window,
        )
        for device_id in sorted(set(device_ids))
    ]
    try:
        with transaction.atomic():
            return DeviceAllocation.objects.bulk_create(rows)
    except IntegrityError as error:
        if EXCLUSION_CONSTRAINT in str(error):
            raise AllocationConflict("Some of these devices are already booked or in maintenance for that time.") from error
        raise


def device_allocations_release(*, reservation_id: int | None = None, maintenance_window: MaintenanceWindow | None = None) -> int:
    """Mark a reservation's or a window's allocations released (kept for history). Idempotent."""
    if (reservation_id is None) == (maintenance_window is None):
        raise ValueError("Give exactly one of reservation_id or maintenance_window.")
    allocations = DeviceAllocation.objects.filter(is_active=True)
    if reservation_id is not None:
        allocations = allocations.filter(reservation_id=reservation_id)
    else:
        allocations = allocations.filter(maintenance_window=maintenance_window)
    return allocations.update(is_active=False)
