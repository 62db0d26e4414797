"""Bring a booked reservation to active the way production does since provisioning: the provision
service publishes its assignments, and each node reports them running at `at` (the instant service,
and billing, start). For tests written before provisioning that activated through reservations_advance."""

from datetime import datetime

from marketplace.models import NodeAssignment, Reservation
from marketplace.provisioning.services import assignment_report, reservation_provision


def handed_over(reservation: Reservation, *, at: datetime) -> Reservation:
    reservation_provision(reservation.pk, now=at)
    for assignment in NodeAssignment.objects.filter(
        reservation_id=reservation.pk, stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN
    ).order_by("pk"):
        assignment_report(node_id=assignment.node_id, assignment_id=assignment.pk, state="running", at=at)
    reservation.refresh_from_db()
    return reservation
