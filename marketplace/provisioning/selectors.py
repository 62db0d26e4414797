"""Provisioning reads: what a node's agent is told, and the buyer's connection details."""

import shlex
from dataclasses import dataclass

from django.conf import settings

from inventory.models import Device, Node
from marketplace.models import NodeAssignment, Reservation


def node_assignment_list(*, node_id: int) -> list[NodeAssignment]:
    """The node's open assignments (to run, or to stop and not yet reported stopped), oldest first,
    each with `.devices` (its Device rows, by index), `.ends_at` and `.stack`. Three queries however many."""
    assignments = list(
        NodeAssignment.objects.filter(node_id=node_id, stopped_at__isnull=True)
        .select_related("reservation", "node__accelerator_model").order_by("pk")
    )
    device_ids = {device_id for assignment in assignments for device_id in assignment.device_ids}
    devices = Device.objects.in_bulk(device_ids) if device_ids else {}
    for assignment in assignments:
        assignment.devices = sorted((devices[pk] for pk in assignment.device_ids if pk in devices), key=lambda d: d.index)
        assignment.ends_at = assignment.reservation.end
        assignment.stack = assignment.node.accelerator_model.stack
    return assignments


@dataclass(frozen=True)
class NodeConnection:
    host: str
    port: int
    user: str

    @property
    def command(self) -> str:
        return f"ssh -p {self.port} {shlex.quote(self.user)}@{shlex.quote(self.host)}"


def _node_host(node: Node) -> str:
    # The node's registered hostname is its address for buyers (providers list public names).
    return node.hostname


def reservation_connections(*, reservation: Reservation) -> list[NodeConnection]:
    """How the buyer reaches the reservation's machines: one per node whose workload runs - only while
    it is active (or migrating with a running assignment); [] otherwise. Callers serve it only to the
    buyer organization (the reservation selectors scope by organization). Reads the list's prefetch
    (`running_assignments`) when present, else one query."""
    if reservation.status not in (Reservation.Status.ACTIVE, Reservation.Status.MIGRATING):
        return []
    running = getattr(reservation, "running_assignments", None)
    if running is None:
        running = list(running_assignments_queryset().filter(reservation_id=reservation.pk))
    user = settings.PROVISIONING_SSH_USER
    return [NodeConnection(host=_node_host(a.node), port=a.ssh_port, user=user) for a in sorted(running, key=lambda a: a.node.hostname)]


def running_assignments_queryset():
    """Open assignments to run whose workload runs, with their node: what connection details read."""
    return NodeAssignment.objects.filter(
        stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN, state=NodeAssignment.State.RUNNING
    ).select_related("node")
