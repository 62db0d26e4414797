"""The provider driver seam (see the package docstring): prepare, start, stop, health.

Adding a driver (Slurm, Kubernetes): subclass ProviderDriver, register it in DRIVERS under a new name,
and make `driver_for_node` choose it for the nodes it serves. The reservation lifecycle
(marketplace.provisioning.services) calls only these four operations and reads only NodeAssignment.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection

from inventory.models import Node
from marketplace.models import NodeAssignment, Reservation

# pg_advisory_xact_lock(namespace, node id): serializes the port choice on one node.
_PORT_LOCK_NAMESPACE = 8_001


class NoFreePort(Exception):
    """Every SSH port of the configured range is held by an open assignment of this node."""


@dataclass(frozen=True)
class Health:
    """What the node says about one assignment: NodeAssignment.State and the node's reason."""

    state: str
    reason: str = ""


@dataclass(frozen=True)
class Workload:
    """What a reservation runs on one node, whatever the driver."""

    reservation: Reservation
    node: Node
    device_ids: list[int]
    image: str
    ssh_public_keys: list[str]
    deadline: datetime


class ProviderDriver:
    """How workloads reach a provider's machines. Every method runs inside the caller's transaction
    (the reservation row is locked) and must be idempotent: the sweeper calls them again."""

    name = ""
    # True when the nodes report on their own (the lifecycle learns health from their reports, so the
    # sweeper need not ask); a driver that must be polled (a scheduler's job state) says False.
    reports_itself = True

    def prepare(self, *, workload: Workload, at: datetime) -> NodeAssignment:
        """The desired state for the node, not yet published (an unsaved row)."""
        raise NotImplementedError

    def start(self, *, assignment: NodeAssignment, at: datetime) -> NodeAssignment:
        """Publish / submit it: from here on the node is to run it."""
        raise NotImplementedError

    def stop(self, *, assignment: NodeAssignment, at: datetime, reason: str = "") -> NodeAssignment:
        """Ask the node to stop the workload (again, if asked before)."""
        raise NotImplementedError

    def health(self, *, assignment: NodeAssignment) -> Health:
        """The node's view of the assignment."""
        raise NotImplementedError


class NodeAgentDriver(ProviderDriver):
    """The Computeflow node agent, in a pull model: it polls GET /api/agent/assignments/ and reports
    through POST /api/agent/assignments/<id>/report/. Publishing is saving the row; nothing is sent."""

    name = "node_agent"
    reports_itself = True

    def prepare(self, *, workload: Workload, at: datetime) -> NodeAssignment:
        return NodeAssignment(
            reservation=workload.reservation, node=workload.node, driver=self.name, device_ids=sorted(workload.device_ids),
            image=workload.image, ssh_public_keys=list(workload.ssh_public_keys), ssh_port=_free_port(node_id=workload.node.pk),
            deadline=workload.deadline, published_at=at,
        )

    def start(self, *, assignment: NodeAssignment, at: datetime) -> NodeAssignment:
        assignment.desired = NodeAssignment.Desired.RUN
        assignment.published_at = at
        assignment.save()
        return assignment

    def stop(self, *, assignment: NodeAssignment, at: datetime, reason: str = "") -> NodeAssignment:
        if assignment.desired == NodeAssignment.Desired.STOP:
            return assignment  # the row is still listed to the agent: re-publishing is keeping it so
        assignment.desired = NodeAssignment.Desired.STOP
        assignment.stop_requested_at = at
        if reason and not assignment.reason:
            assignment.reason = reason[:500]
        assignment.save(update_fields=["desired", "stop_requested_at", "reason"])
        return assignment

    def health(self, *, assignment: NodeAssignment) -> Health:
        return Health(state=assignment.state, reason=assignment.reason)


def _free_port(*, node_id: int) -> int:
    """The lowest port of the range no open assignment of the node holds. The advisory lock (released
    at commit) makes two reservations publishing on one node take turns; the partial unique constraint
    node_assignment_ssh_port_free stays the guarantee."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_PORT_LOCK_NAMESPACE, node_id])
    taken = set(NodeAssignment.objects.filter(node_id=node_id, stopped_at__isnull=True).values_list("ssh_port", flat=True))
    for port in range(settings.PROVISIONING_SSH_PORT_FIRST, settings.PROVISIONING_SSH_PORT_LAST + 1):
        if port not in taken:
            return port
    raise NoFreePort(f"every SSH port from {settings.PROVISIONING_SSH_PORT_FIRST} to {settings.PROVISIONING_SSH_PORT_LAST} is in use")


DRIVERS: dict[str, ProviderDriver] = {NodeAgentDriver.name: NodeAgentDriver()}


def driver_named(name: str) -> ProviderDriver:
    return DRIVERS[name]


def driver_for_node(*, node: Node) -> ProviderDriver:
    """The driver that runs workloads on `node`. Every node runs the agent today; a cluster field
    (or the provider's settings) will choose here once a second driver exists."""
    return DRIVERS[NodeAgentDriver.name]
