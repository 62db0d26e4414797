"""Stopping a reservation's assignments: called by the lifecycle (marketplace.services.reservation_set_status
and reservation_rehome), so it must not import marketplace.services (that imports this module)."""

from datetime import datetime

from marketplace.models import NodeAssignment
from marketplace.provisioning.drivers import driver_named


def assignments_stop(*, reservation_id: int, at: datetime, reason: str = "", node_ids: list[int] | None = None) -> int:
    """Give every open assignment of the reservation that is to run (only on `node_ids`, if given)
    desired stop, through its driver. The caller holds the reservation's row lock. Returns how many."""
    rows = NodeAssignment.objects.select_for_update().filter(
        reservation_id=reservation_id, stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN
    )
    if node_ids is not None:
        rows = rows.filter(node_id__in=node_ids)
    stopped = 0
    for assignment in rows.order_by("pk"):
        driver_named(assignment.driver).stop(assignment=assignment, at=at, reason=reason)
        stopped += 1
    return stopped
