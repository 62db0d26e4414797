"""The provider driver seam: the lifecycle reaches nodes only through a driver from the registry, so a
driver that must be polled (a Slurm- or Kubernetes-like scheduler) plugs in without touching it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.models import NodeAssignment, Reservation
from marketplace.provisioning import drivers, services
from marketplace.provisioning.drivers import DRIVERS, Health, NodeAgentDriver, ProviderDriver
from marketplace.provisioning.services import reservation_provision, reservations_sweep
from marketplace.services import reservation_create, reservation_release

pytestmark = pytest.mark.django_db


class SchedulerDriver(ProviderDriver):
    """A driver whose nodes do not report: a job is submitted on start, cancelled on stop, and its state is
    asked for (here the scheduler is a dict the test plays)."""

    name = "test_scheduler"
    reports_itself = False

    def __init__(self):
        self.jobs: dict[int, str] = {}  # assignment id -> job state
        self.calls: list[tuple[str, int]] = []

    def prepare(self, *, workload, at):
        return NodeAgentDriver().prepare(workload=workload, at=at)  # the same desired state, another carrier

    def start(self, *, assignment, at):
        assignment.driver = self.name
        assignment.save()
        self.jobs[assignment.pk] = "pending"
        self.calls.append(("start", assignment.pk))
        return assignment

    def stop(self, *, assignment, at, reason=""):
        self.calls.append(("stop", assignment.pk))
        self.jobs[assignment.pk] = "cancelled"
        return NodeAgentDriver().stop(assignment=assignment, at=at, reason=reason)

    def health(self, *, assignment):
        self.calls.append(("health", assignment.pk))
        return Health(state={"pending": "pending", "running": "running"}.get(self.jobs[assignment.pk], "failed"))


@pytest.fixture
def scheduler(monkeypatch):
    driver = SchedulerDriver()
    monkeypatch.setitem(DRIVERS, driver.name, driver)
    monkeypatch.setattr(services, "driver_for_node", lambda *, node: driver)
    return driver


def test_a_polled_driver_is_started_asked_for_health_by_the_sweeper_and_stopped(small_offer, buyer, scheduler):
    start = timezone.now()
    reservation, _ = reservation_create(organization=buyer.memberships.get().organization, created_by=buyer,
                                        offer=small_offer, card_count=4, start=start, end=start + timedelta(hours=2))
    # when provisioning runs, the lifecycle starts the workload through the driver
    reservation_provision(reservation.pk)
    [assignment] = NodeAssignment.objects.filter(reservation=reservation)
    assert assignment.driver == "test_scheduler" and scheduler.calls == [("start", assignment.pk)]
    # while the job is pending the sweeper asks and nothing moves
    reservations_sweep()
    assert ("health", assignment.pk) in scheduler.calls
    assert Reservation.objects.get(pk=reservation.pk).status == "provisioning"
    # once the scheduler says running, the sweeper's poll activates the reservation at that instant
    scheduler.jobs[assignment.pk] = "running"
    polled_at = timezone.now()
    reservations_sweep(now=polled_at)
    reservation.refresh_from_db()
    assert reservation.status == "active" and reservation.active_from == polled_at
    # and a release stops it through the same driver
    reservation_release(reservation=reservation, actor=buyer)
    assert scheduler.calls[-1] == ("stop", assignment.pk) and scheduler.jobs[assignment.pk] == "cancelled"


def test_the_registry_names_the_node_agent_driver_for_every_node_today(small_offer):
    node = small_offer.cluster.nodes.first()
    assert isinstance(drivers.driver_for_node(node=node), NodeAgentDriver)
    assert drivers.driver_named("node_agent") is DRIVERS["node_agent"]
