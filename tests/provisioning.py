"""What the clock and the node agents do to a booking, for tests that need a reservation in service.

hand_over runs the real provisioning service (requested -> provisioning, assignments published) and
the real report service (every node reports running): the reservation turns active the way it does in
production, at the instant given.
"""

from django.utils import timezone

from marketplace.models import NodeAssignment, Reservation
from marketplace.provisioning.services import assignment_report, reservation_provision


def open_assignments(reservation) -> list[NodeAssignment]:
    return list(NodeAssignment.objects.filter(reservation_id=reservation.pk, stopped_at__isnull=True).order_by("node__hostname"))


def report_all(reservation, *, state: str = "running", at=None, reason: str = "") -> Reservation:
    at = at or timezone.now()
    for assignment in open_assignments(reservation):
        if assignment.desired == NodeAssignment.Desired.RUN:
            assignment_report(node_id=assignment.node_id, assignment_id=assignment.pk, state=state, reason=reason, at=at)
    reservation.refresh_from_db()
    return reservation


def hand_over(reservation, *, at=None) -> Reservation:
    """Provision at `at` (default now) and have every node report the workload running at `at`."""
    at = at or timezone.now()
    reservation_provision(reservation.pk, now=at)
    return report_all(reservation, at=at)
