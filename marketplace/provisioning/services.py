"""Provisioning writes: publish a reservation's workload to its nodes, take the nodes' reports, sweep.

See the package docstring for the rules. Lock order everywhere: the reservation row first, then its
assignments - so a report, a release and the sweeper never deadlock on the same reservation.
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.selectors import ssh_keys_for_organization
from config.tasks import enqueue_after_commit
from inventory.allocations import device_allocations_release, reservation_devices_unhealthy
from inventory.models import Device, DeviceAllocation, Node, ReliabilityEvent
from inventory.reliability import node_reliability_record
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_get
from marketplace.models import NodeAssignment, Reservation, ReservationStatusChange
from marketplace.provisioning.assignments import assignments_stop
from marketplace.provisioning.drivers import NoFreePort, Workload, driver_for_node, driver_named
from marketplace.reasons import ReasonCode, time_param
from marketplace.services import ReservationStateError, reservation_set_status

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# An unconfirmed stop is sent again after this long (the node may have missed it, or been away).
STOP_RESEND_AFTER = timedelta(minutes=5)
# Statuses in which a reservation's workload is being brought up on (some of) its nodes.
_BOOTING = frozenset({Reservation.Status.PROVISIONING, Reservation.Status.MIGRATING})


class AssignmentNotFound(Exception):
    """No such assignment on the reporting node (another node's is the same as none). Maps to 404."""

    code = "not_found"

    def __init__(self, message: str = "No such assignment on this node."):
        super().__init__(message)
        self.message = message


class AssignmentClosed(Exception):
    """A "running" report for an assignment the server has given up on (deadline missed, failed,
    cancelled, released): the node must stop the workload. Maps to 409 assignment_closed."""

    def __init__(self, message: str = "This assignment is closed: stop the workload and report it stopped."):
        super().__init__(message)
        self.message = message


# --- what failover and reliability learn from provisioning -------------------------------------------------------


def _boot_failed(assignment: NodeAssignment) -> None:
    """A boot failed on assignment.node: the node's reliability record counts it (a host fault: the node
    took the assignment and could not run it). At the failure report's arrival, or the missed deadline;
    idempotent per (node, kind, instant)."""
    node_reliability_record(
        node=assignment.node, kind=ReliabilityEvent.Kind.BOOT_FAILED, cause=ReliabilityEvent.Cause.HOST_FAULT,
        at=assignment.reported_at or assignment.deadline, details=assignment.reason,
    )


def _migration_healthy(reservation: Reservation, at: datetime) -> None:
    """A migrating reservation's new devices reported healthy at `at`: its downtime ends there."""
    from marketplace.failover import reservation_downtime_close  # failover imports this module

    reservation_downtime_close(reservation=reservation, at=at)


# --- enqueue -----------------------------------------------------------------------------------


def reservation_provision_after_commit(*, reservation_id: int) -> None:
    """Enqueue marketplace.reservation_provision once the caller's transaction commits. A broker that
    is down is logged, never raised: the booking stands and the sweeper re-drives it."""

    from marketplace.tasks import reservation_provision_task

    enqueue_after_commit(reservation_provision_task, reservation_id)


# --- provisioning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionResult:
    status: str  # the reservation's status afterwards
    published: int  # assignments published by this call


def _held_devices_by_node(*, reservation_id: int, at: datetime) -> dict[int, list[int]]:
    """node id -> the reservation's device ids there, at instant `at` (its allocations covering `at`)."""
    by_node: dict[int, list[int]] = {}
    for device_id, node_id in DeviceAllocation.objects.filter(
        reservation_id=reservation_id, is_active=True, period__contains=at
    ).values_list("device_id", "node_id").order_by("device_id"):
        by_node.setdefault(node_id, []).append(device_id)
    return by_node


def _fail_boot(*, reservation: Reservation, at: datetime, reason_code: str, reason_params: dict) -> Reservation:
    """Provisioning gave up: devices freed, failed (never active, so nothing billed). reservation_set_status
    gives every open assignment desired stop."""
    device_allocations_release(reservation_id=reservation.pk, at=at, reason=DeviceAllocation.ReleaseReason.FAILED)
    return reservation_set_status(
        reservation=reservation, status=Reservation.Status.FAILED, reason_code=reason_code, reason_params=reason_params, at=at
    )


def reservation_provision(reservation_id: int, *, now: datetime | None = None) -> ProvisionResult:
    """Bring a reservation whose start has come to its nodes. Idempotent (run it any number of times).

    requested -> provisioning once start <= now < end (failed at once when its hardware fails the health
    check or its workload has no image for the stack); then, for provisioning and migrating
    reservations, publishes through each node's driver an assignment for every node that holds its
    devices now and has no open assignment to run: the devices, the launch template's image for the
    node's stack, the buyer organization's SSH keys, a free SSH port and a deadline of now +
    PROVISIONING_BOOT_TIMEOUT_SECONDS. For a migrating reservation whose devices on a node changed, the
    old workload there is stopped first and the new one published once the stop is confirmed. Too
    early, too late or any other status: nothing happens.
    """
    now = now or timezone.now()
    with transaction.atomic():
        reservation = (
            Reservation.objects.select_for_update(of=("self",))
            .select_related("launch_template", "buyer").get(pk=reservation_id)
        )
        if reservation.status == Reservation.Status.REQUESTED:
            if not reservation.start <= now < reservation.end:
                return ProvisionResult(status=reservation.status, published=0)  # not yet; or reservations_advance fails it
            unhealthy = reservation_devices_unhealthy(reservation_id=reservation.pk, at=now)
            if unhealthy:
                reservation = _fail_boot(
                    reservation=reservation, at=now, reason_code=ReasonCode.UNHEALTHY_AT_ACTIVATION,
                    reason_params={"count": unhealthy, "cards": reservation.card_count},
                )
                return ProvisionResult(status=reservation.status, published=0)
            reservation = reservation_set_status(
                reservation=reservation, status=Reservation.Status.PROVISIONING, reason_code=ReasonCode.START_REACHED
            )
        if reservation.status not in _BOOTING:
            return ProvisionResult(status=reservation.status, published=0)
        published = _publish_missing(reservation=reservation, now=now)
        return ProvisionResult(status=Reservation.objects.values_list("status", flat=True).get(pk=reservation.pk), published=published)


def _publish_missing(*, reservation: Reservation, now: datetime) -> int:
    held = _held_devices_by_node(reservation_id=reservation.pk, at=now)
    open_rows = list(NodeAssignment.objects.select_for_update().filter(reservation_id=reservation.pk, stopped_at__isnull=True))
    for row in open_rows:
        if (reservation.status == Reservation.Status.MIGRATING and row.desired == NodeAssignment.Desired.RUN
                and row.node_id in held and set(row.device_ids) != set(held[row.node_id])):
            # A move changed which of this node's devices serve the reservation: the workload restarts on the
            # new set. One open row per (reservation, node): the new one is published once this stop is
            # confirmed (_report_stopped, or the sweeper).
            driver_named(row.driver).stop(assignment=row, at=now, reason="the reservation's devices on this node changed")
    # A node with any open row (to run, or still stopping) gets nothing new until that row is closed.
    missing = sorted(set(held) - {row.node_id for row in open_rows})
    if not missing:
        return 0
    template = reservation.launch_template or launch_template_get(slug=DEFAULT_LAUNCH_TEMPLATE)
    keys = [key.authorized_keys_line for key in ssh_keys_for_organization(organization=reservation.buyer)]
    deadline = now + timedelta(seconds=settings.PROVISIONING_BOOT_TIMEOUT_SECONDS)
    nodes = Node.objects.select_related("accelerator_model").in_bulk(missing)
    for node_id in missing:
        node = nodes[node_id]
        image = template.image_for(node.accelerator_model.stack) if template is not None else None
        if image is None:
            if reservation.status == Reservation.Status.PROVISIONING:
                _fail_boot(reservation=reservation, at=now, reason_code=ReasonCode.NO_IMAGE_AT_START, reason_params={
                    "template": template.name if template else DEFAULT_LAUNCH_TEMPLATE, "stack": node.accelerator_model.stack,
                })
            return 0
        driver = driver_for_node(node=node)
        try:
            assignment = driver.prepare(workload=Workload(
                reservation=reservation, node=node, device_ids=held[node_id], image=image.image, ssh_public_keys=keys,
                deadline=deadline,
            ), at=now)
        except NoFreePort as error:
            if reservation.status == Reservation.Status.PROVISIONING:
                _fail_boot(reservation=reservation, at=now, reason_code=ReasonCode.BOOT_FAILED,
                           reason_params={"node": node.hostname, "reason": str(error)})
            return 0
        driver.start(assignment=assignment, at=now)
    if reservation.status == Reservation.Status.PROVISIONING:
        ReservationStatusChange.objects.create(
            reservation=reservation, from_status=reservation.status, to_status=reservation.status,
            reason_code=ReasonCode.PROVISIONING_PUBLISHED, reason_params={"nodes": len(missing), "deadline": time_param(deadline)},
        )
    return len(missing)


# --- the agent's reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportResult:
    assignment: NodeAssignment
    reservation_status: str


def assignment_report(
    *, node_id: int, assignment_id: int, state: str, at: datetime, reason: str = "", devices: list[dict] | None = None
) -> ReportResult:
    """A node's report on one of its assignments, arrived at `at` (the server's clock).

    `state` is running, failed or stopped; `devices` ({"index", "healthy"}) name the assignment's
    devices - one listed unhealthy turns a running report into a failed one. Idempotent: the same
    report again changes nothing. Raises AssignmentNotFound (another node's, or no such assignment),
    ValidationError (a device index that is not the assignment's), and AssignmentClosed for "running"
    on an assignment the server gave up on - after committing what the report changed.
    """
    # One line of printable text: it ends up in the buyer's timeline and in logs.
    reason = " ".join(_CONTROL.sub(" ", reason or "").split())[:MAX_REASON_CHARS]
    closed = False
    with transaction.atomic():
        reservation_id = NodeAssignment.objects.filter(pk=assignment_id, node_id=node_id).values_list("reservation_id", flat=True).first()
        if reservation_id is None:
            raise AssignmentNotFound()
        reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
        assignment = NodeAssignment.objects.select_for_update().select_related("node").get(pk=assignment_id)
        unhealthy = _unhealthy_indices(assignment=assignment, devices=devices or [])
        if unhealthy and state == NodeAssignment.State.RUNNING:
            state = NodeAssignment.State.FAILED
            listed = ", ".join(str(index) for index in unhealthy)
            reason = (f"device(s) {listed} unhealthy" + (f": {reason}" if reason else ""))[:MAX_REASON_CHARS]
        if state == NodeAssignment.State.RUNNING:
            closed = _report_running(reservation=reservation, assignment=assignment, at=at)
        elif state == NodeAssignment.State.FAILED:
            reservation = _report_failed(reservation=reservation, assignment=assignment, at=at, reason=reason or "no reason given")
        else:
            reservation = _report_stopped(reservation=reservation, assignment=assignment, at=at, reason=reason)
        reservation.refresh_from_db(fields=["status"])
        assignment.refresh_from_db()
    if closed:
        # Raised after the commit: what the report changed (a deadline turned into a failure) stands.
        raise AssignmentClosed()
    return ReportResult(assignment=assignment, reservation_status=reservation.status)


def _unhealthy_indices(*, assignment: NodeAssignment, devices: list[dict]) -> list[int]:
    from django.core.exceptions import ValidationError

    indices = dict(Device.objects.filter(pk__in=assignment.device_ids).values_list("index", "pk"))
    unknown = sorted({item["index"] for item in devices} - set(indices))
    if unknown:
        raise ValidationError({"devices": [f"Device index {unknown[0]} is not one of this assignment's devices ({sorted(indices)})."]})
    return sorted({item["index"] for item in devices if not item["healthy"]})


def _report_running(*, reservation: Reservation, assignment: NodeAssignment, at: datetime) -> bool:
    """Returns True when the assignment is closed (the caller answers 409 after committing)."""
    if assignment.desired == NodeAssignment.Desired.STOP or assignment.state in (NodeAssignment.State.FAILED, NodeAssignment.State.STOPPED):
        return True
    if assignment.state == NodeAssignment.State.RUNNING:
        return False  # the same report again
    if assignment.state == NodeAssignment.State.PENDING and at >= assignment.deadline:
        # Too late, whatever the sweeper has not noticed yet: the same rule as the sweeper's.
        _deadline_missed(reservation=reservation, assignment=assignment, at=at)
        return True
    assignment.state = NodeAssignment.State.RUNNING
    assignment.reported_at = at
    assignment.save(update_fields=["state", "reported_at"])
    _activate_if_all_running(reservation=reservation, at=at)
    return False


def _activate_if_all_running(*, reservation: Reservation, at: datetime) -> None:
    if reservation.status not in _BOOTING:
        return
    open_run = list(NodeAssignment.objects.filter(
        reservation_id=reservation.pk, stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN
    ).values_list("state", "device_ids"))
    if not open_run or any(state != NodeAssignment.State.RUNNING for state, _ in open_run):
        return
    covered = {device_id for _, device_ids in open_run for device_id in device_ids}
    held = {device_id for device_ids in _held_devices_by_node(reservation_id=reservation.pk, at=at).values() for device_id in device_ids}
    if not held <= covered:
        return  # a node has not been published yet (the sweeper will): not every device is running
    if reservation.status == Reservation.Status.MIGRATING:
        reservation_set_status(reservation=reservation, status=Reservation.Status.ACTIVE, reason_code=ReasonCode.REHOMED_HEALTHY, at=at)
        _migration_healthy(reservation, at)
    else:
        # The last node's report arrived at `at`: service, and billing, start there.
        reservation_set_status(reservation=reservation, status=Reservation.Status.ACTIVE, reason_code=ReasonCode.HANDED_OVER, at=at)


def _report_failed(*, reservation: Reservation, assignment: NodeAssignment, at: datetime, reason: str) -> Reservation:
    if assignment.state in (NodeAssignment.State.FAILED, NodeAssignment.State.STOPPED):
        return reservation  # known already (the same report again, or it is gone)
    booting = assignment.state == NodeAssignment.State.PENDING
    wanted = assignment.desired == NodeAssignment.Desired.RUN  # a workload dying while being stopped is no failure
    assignment.state = NodeAssignment.State.FAILED
    assignment.reason = reason
    assignment.reported_at = at
    assignment.save(update_fields=["state", "reason", "reported_at"])
    driver_named(assignment.driver).stop(assignment=assignment, at=at)
    if booting:
        _boot_failed(assignment)
    if reservation.status == Reservation.Status.PROVISIONING:
        return _fail_boot(reservation=reservation, at=at, reason_code=ReasonCode.BOOT_FAILED,
                          reason_params={"node": assignment.node.hostname, "reason": reason})
    if not wanted:
        return reservation
    if booting and reservation.status == Reservation.Status.MIGRATING:
        return _move_failed(reservation=reservation, assignment=assignment, at=at, reason=reason)
    if not booting and reservation.status in (Reservation.Status.ACTIVE, Reservation.Status.MIGRATING):
        # Died in service on a node that still heartbeats: that node's share fails over from `at`.
        from marketplace.failover import reservation_workload_failover  # failover imports this module

        reservation_workload_failover(reservation=reservation, node=assignment.node, at=at)
        reservation.refresh_from_db()
    return reservation


def _move_failed(*, reservation: Reservation, assignment: NodeAssignment, at: datetime, reason: str) -> Reservation:
    """A migrating reservation's new cards did not start: failover's rule (the reservation ends at `at`)."""
    from marketplace.failover import reservation_move_failed  # failover imports this module

    return reservation_move_failed(reservation=reservation, node=assignment.node, at=at, reason=reason)


def _report_stopped(*, reservation: Reservation, assignment: NodeAssignment, at: datetime, reason: str) -> Reservation:
    if assignment.state == NodeAssignment.State.STOPPED:
        return reservation
    if assignment.desired == NodeAssignment.Desired.RUN:
        # Gone while it should run: a failure (the node still confirms the stop afterwards).
        return _report_failed(reservation=reservation, assignment=assignment, at=at,
                              reason=reason or "the workload stopped on the node")
    assignment.state = NodeAssignment.State.STOPPED
    assignment.reported_at = at
    assignment.stopped_at = at
    assignment.save(update_fields=["state", "reported_at", "stopped_at"])
    if reservation.status in _BOOTING and reservation.start <= at < reservation.end:
        # The node is free for this reservation again: publish what a move wants there now.
        _publish_missing(reservation=reservation, now=at)
    return reservation


def _deadline_missed(*, reservation: Reservation, assignment: NodeAssignment, at: datetime) -> None:
    assignment.state = NodeAssignment.State.FAILED
    assignment.reason = f"not running by the deadline {assignment.deadline.isoformat()}"
    assignment.save(update_fields=["state", "reason"])
    driver_named(assignment.driver).stop(assignment=assignment, at=at)
    _boot_failed(assignment)
    if reservation.status == Reservation.Status.PROVISIONING:
        _fail_boot(reservation=reservation, at=at, reason_code=ReasonCode.BOOT_DEADLINE_MISSED,
                   reason_params={"node": assignment.node.hostname, "deadline": time_param(assignment.deadline)})
    elif reservation.status == Reservation.Status.MIGRATING:
        _move_failed(reservation=reservation, assignment=assignment, at=at, reason=assignment.reason)


# --- the sweeper ---------------------------------------------------------------------------------


def reservations_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Re-drive what got stuck (beat, every minute; idempotent):

    * requested past its start (before its end): the provision task was lost (Redis down at commit, a
      worker killed) -> reservation_provision;
    * provisioning or migrating with a node that holds its devices but has no open assignment ->
      reservation_provision publishes the missing ones;
    * open assignments still pending past their deadline -> failed (boot_deadline_missed), the
      reservation failed when it was provisioning;
    * drivers that do not report on their own -> their health is read;
    * stops not confirmed within STOP_RESEND_AFTER -> sent again through the driver.
    """
    now = now or timezone.now()
    done = {"provisioned": 0, "deadline_missed": 0, "stops_resent": 0}
    stuck = Reservation.objects.filter(
        status=Reservation.Status.REQUESTED, start__lte=now, end__gt=now
    ).values_list("pk", flat=True)
    booting = Reservation.objects.filter(status__in=_BOOTING, end__gt=now).values_list("pk", flat=True)
    for reservation_id in sorted(set(stuck) | set(booting)):
        try:
            done["provisioned"] += reservation_provision(reservation_id, now=now).published
        except ReservationStateError:
            continue  # moved by someone else meanwhile
    late = NodeAssignment.objects.filter(
        stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN, state=NodeAssignment.State.PENDING, deadline__lte=now
    ).values_list("pk", "reservation_id")
    for assignment_id, reservation_id in list(late):
        with transaction.atomic():
            reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
            assignment = NodeAssignment.objects.select_for_update().select_related("node").get(pk=assignment_id)
            if assignment.state != NodeAssignment.State.PENDING or assignment.desired != NodeAssignment.Desired.RUN:
                continue  # reported meanwhile
            _deadline_missed(reservation=reservation, assignment=assignment, at=now)
            done["deadline_missed"] += 1
    polled = [name for name, driver in _drivers().items() if not driver.reports_itself]
    for assignment in NodeAssignment.objects.filter(
        stopped_at__isnull=True, desired=NodeAssignment.Desired.RUN, state=NodeAssignment.State.PENDING, driver__in=polled
    ):
        health = driver_named(assignment.driver).health(assignment=assignment)
        if health.state != NodeAssignment.State.PENDING:
            try:
                assignment_report(node_id=assignment.node_id, assignment_id=assignment.pk, state=health.state, reason=health.reason, at=now)
            except AssignmentClosed:
                pass
    unconfirmed = NodeAssignment.objects.filter(
        stopped_at__isnull=True, desired=NodeAssignment.Desired.STOP, stop_requested_at__lte=now - STOP_RESEND_AFTER
    )
    for assignment in unconfirmed:
        driver_named(assignment.driver).stop(assignment=assignment, at=now)
        done["stops_resent"] += 1
    return done


def _drivers():
    from marketplace.provisioning.drivers import DRIVERS

    return DRIVERS


__all__ = [
    "AssignmentClosed", "AssignmentNotFound", "assignment_report", "assignments_stop", "reservation_provision",
    "reservation_provision_after_commit", "reservations_sweep",
]
