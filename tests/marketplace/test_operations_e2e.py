"""Operations end to end, after the merge of provisioning, failover, the agent and billing: a live server
(pytest-django's live_server, real HTTP), the real Celery worker on the real Redis, and the REAL node agent
(`python -m nodeagent --simulate`, a child process per node) - no hand-written agent loop.

* booked -> provisioning -> active -> usage ingested and rolled up -> released, active_from/active_to
  recorded and the agent's stop confirmed; a failed boot (--simulate-fail-boot) costs nothing and its
  reason is on the buyer's page;
* failover: a node's agent dies -> the stale sweep -> the worker fails it over -> migrating -> the new
  node's agent reports healthy -> active; the downtime is recorded and closed at that instant and the gap
  is not billed; to a model the buyer accepted; nothing free -> ended with notice;
* a move whose new boot fails ends the reservation with notice (the rule: marketplace.failover.
  reservation_move_failed);
* a workload that dies while active on a healthy node fails that node's share over from the report.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.test import Client

from accounts.services import api_token_create, ssh_key_add
from inventory.agent_services import node_agent_token_create, nodes_mark_stale
from inventory.models import Node, ReliabilityEvent
from marketplace.metering.services import usage_rollup_refresh
from marketplace.models import (
    NodeAssignment,
    Reservation,
    ReservationDowntime,
    ReservationSegment,
    UsageHourly,
    UsageSample,
)
from marketplace.pricing import card_seconds_price_minor
from nodeagent.apply import SIMULATED_BOOT_FAILURE
from nodeagent.client import AgentClient
from tests.accounts.ssh_key_samples import ED25519
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, accelerator, catalog_loaded, member
from tests.marketplace.agent_process import AgentProcess

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

SILENCE = 3  # seconds without a heartbeat before the sweep calls a node unhealthy (here, not the 180 default)


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wait_for(predicate, *, timeout=60.0, what="condition", agents=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- agent log {agent.log_path.name}:\n{agent.output()[-3000:]}" for agent in agents)
    raise AssertionError(f"{what}: not reached within {timeout}s\n{logs}")


@pytest.fixture
def world(live_server, request, settings, tmp_path):
    settings.AGENT_POLL_SECONDS = 1  # the live server tells the agents to poll every second
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = SILENCE
    catalog_loaded()
    user = member(kind="buyer")
    organization = user.memberships.get().organization
    ssh_key_add(user=user, name="laptop", public_key=ED25519)
    _token, api_key = api_token_create(user=user, organization=organization, name="e2e")
    buyer = requests.Session()
    buyer.headers["Authorization"] = f"Token {api_key}"
    agents: list[AgentProcess] = []

    def agent_for(node: Node, *, fail_boot=False) -> AgentProcess:
        _agent_token, key = node_agent_token_create(node=node)
        agent = AgentProcess(server=live_server.url, key=key, model=node.accelerator_model.name, cards=node.card_count,
                             log_path=tmp_path / f"agent-{node.hostname}.log", fail_boot=fail_boot)
        agent.key = key
        agents.append(agent)
        return agent

    def finish():
        for agent in agents:
            agent.close()
        buyer.close()
        # A task the worker is still running (a report's after-commit work) would hold row locks while the
        # transactional test's teardown truncates every table: let it finish first.
        time.sleep(1.0)

    request.addfinalizer(finish)
    return {"user": user, "buyer": buyer, "url": live_server.url, "agent_for": agent_for, "agents": agents}


def book_now(world, offer, *, cards=4, hours=2, alternatives=()) -> dict:
    start = datetime.now(UTC)
    response = world["buyer"].post(f"{world['url']}/api/reservations/", json={
        "offer": offer.pk, "card_count": cards, "start": _iso(start), "end": _iso(start + timedelta(hours=hours)),
        "accepted_alternatives": list(alternatives),
    }, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def api_reservation(world, reservation_id) -> dict:
    response = world["buyer"].get(f"{world['url']}/api/reservations/{reservation_id}/", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def status_is(world, reservation_id, status, **kwargs) -> dict:
    return wait_for(lambda: (r := api_reservation(world, reservation_id))["status"] == status and r,
                    what=f"reservation {reservation_id} {status}", agents=world["agents"], **kwargs)


def buyer_page(world, reservation_id) -> str:
    browser = Client()
    browser.force_login(world["user"])
    page = requests.get(f"{world['url']}/market/reservations/{reservation_id}/",
                        cookies={"sessionid": browser.cookies["sessionid"].value}, timeout=30)
    assert page.status_code == 200
    return page.text


def silence(world, agent: AgentProcess, node: Node) -> datetime:
    """The node's agent dies; once it has been quiet for longer than the timeout the sweep (beat's task,
    run here) turns the node unhealthy, which announces the capacity loss to the worker. Returns the
    node's last heartbeat."""
    agent.kill()
    time.sleep(SILENCE + 1.5)  # (a heartbeat the server was still taking in when the agent died counts)
    node.refresh_from_db()
    assert node.pk in nodes_mark_stale()
    return node.last_heartbeat_at


def back_in_service(world, reservation_id, **kwargs) -> dict:
    """Active again after a move: the new cards' agent reported healthy."""
    return wait_for(
        lambda: (r := api_reservation(world, reservation_id))["status"] == "active"
        and r["timeline"][-1]["reason_code"] == "rehomed_healthy" and r,
        what=f"reservation {reservation_id} active again", agents=world["agents"], **kwargs)


# --- booked -> active -> usage -> released; a failed boot -----------------------------------------------------------


def test_booked_provisioning_active_usage_released_through_the_real_agent(world, celery_worker_process):
    node = NodeFactory(hostname="ops-e2e-a", card_count=4)
    offer = OfferFactory(cluster=node.cluster)
    agent = world["agent_for"](node)
    # given a booking over HTTP that starts now (the provision task is enqueued after its commit)
    booked = book_now(world, offer)
    assert booked["status"] == "requested" and booked["connection"] is None
    # when the worker publishes the assignment and the node's agent boots it and reports
    active = status_is(world, booked["id"], "active")
    # then it turned active at the arrival of the agent's running report, with its connection details
    assignment = NodeAssignment.objects.get(reservation_id=booked["id"])
    db = Reservation.objects.get(pk=booked["id"])
    assert assignment.state == "running" and db.active_from == assignment.reported_at and db.active_to is None
    assert [c.to_status for c in db.status_changes.all()][-1] == "active"
    assert "provisioning" in [c.to_status for c in db.status_changes.all()]
    assert active["connection"]["command"] == f"ssh -p {assignment.ssh_port} root@ops-e2e-a"
    # and the agent's usage samples arrive for its busy cards, attributed to the reservation
    wait_for(lambda: UsageSample.objects.filter(reservation_id=booked["id"]).values("device").distinct().count() == 4,
             what="usage of the 4 cards", agents=[agent])
    # which the hourly rollup (beat's task, run here) turns into rows that billing and dashboards read
    usage_rollup_refresh()
    hours = UsageHourly.objects.filter(reservation_id=booked["id"])
    assert set(hours.values_list("device_id", flat=True)) == set(assignment.device_ids)
    assert all(row.busy_seconds > 0 and row.samples >= 1 for row in hours)

    # when the buyer releases it over HTTP
    released = world["buyer"].post(f"{world['url']}/api/reservations/{booked['id']}/release/", timeout=30)
    assert released.status_code == 200, released.text
    # then service ended at the release instant; the agent stops the container and confirms
    wait_for(lambda: NodeAssignment.objects.get(pk=assignment.pk).stopped_at is not None, what="stop confirmed", agents=[agent])
    db.refresh_from_db()
    assert db.status == "completed" and db.active_to == db.released_at and db.active_from < db.active_to
    assert NodeAssignment.objects.get(pk=assignment.pk).state == "stopped"
    assert api_reservation(world, booked["id"])["connection"] is None
    segment = ReservationSegment.objects.get(reservation_id=booked["id"])
    assert (segment.started_at, segment.ended_at) == (db.active_from, db.active_to)


def test_a_failed_boot_through_the_real_agent_costs_nothing_and_the_reason_is_on_the_page(world, celery_worker_process):
    node = NodeFactory(hostname="ops-e2e-b", card_count=4)
    offer = OfferFactory(cluster=node.cluster)
    world["agent_for"](node, fail_boot=True)
    booked = book_now(world, offer)
    # when the agent's boot fails
    failed = status_is(world, booked["id"], "failed")
    # then nothing to pay, never active, no connection, the cards free again, the reason on the page
    assert failed["total_price_minor"] == 0 and failed["active_from"] is None and failed["connection"] is None
    assert failed["timeline"][-1]["reason_code"] == "boot_failed"
    assert SIMULATED_BOOT_FAILURE in failed["timeline"][-1]["reason"]
    assert not ReservationSegment.objects.filter(reservation_id=booked["id"]).exists()
    page = buyer_page(world, booked["id"])
    assert 'data-testid="failure-reason"' in page and "simulated boot failure" in page
    assert ReliabilityEvent.objects.filter(node=node, kind="boot_failed").count() == 1
    again = book_now(world, offer)  # the same 4 cards can be booked again
    status_is(world, again["id"], "failed")  # (and this node fails every boot)


# --- failover --------------------------------------------------------------------------------------------------------


def _active_on(world, offer, node, **kwargs):
    """A reservation booked now, active on `node` through its real agent."""
    agent = world["agent_for"](node)
    booked = book_now(world, offer, **kwargs)
    status_is(world, booked["id"], "active")
    assert set(NodeAssignment.objects.filter(reservation_id=booked["id"]).values_list("node_id", flat=True)) == {node.pk}
    # served for a while: the node heartbeats after the hand-over (failover never moves service back
    # before active_from, so a node dying in between would lose nothing billed)
    active_from = Reservation.objects.get(pk=booked["id"]).active_from
    wait_for(lambda: Node.objects.get(pk=node.pk).last_heartbeat_at > active_from, what="a heartbeat after the hand-over", agents=[agent])
    return booked, agent


def test_a_silent_node_fails_over_and_the_new_nodes_agent_brings_it_back(world, celery_worker_process):
    cluster = ClusterFactory()
    first = NodeFactory(cluster=cluster, hostname="ops-fo-a", card_count=4)
    offer = OfferFactory(cluster=cluster)
    booked, agent = _active_on(world, offer, first)
    # the second node joins after the booking (so the booking could only land on the first)
    second = NodeFactory(cluster=cluster, hostname="ops-fo-b", card_count=4)
    world["agent_for"](second)
    # when the first node's agent dies and the sweep calls the node unhealthy
    last_heartbeat = silence(world, agent, first)
    # then the worker fails it over (migrating), the second node's agent boots it, and it is active again
    active = back_in_service(world, booked["id"])
    assert "migrating" in [c["to_status"] for c in active["timeline"]]
    new = NodeAssignment.objects.get(reservation_id=booked["id"], node=second)
    assert new.state == "running"
    assert active["connection"]["command"] == f"ssh -p {new.ssh_port} root@ops-fo-b"
    # the downtime runs from the failed node's last heartbeat to the new node's healthy report
    downtime = ReservationDowntime.objects.get(reservation_id=booked["id"])
    assert (downtime.node_id, downtime.started_at, downtime.ended_at) == (first.pk, last_heartbeat, new.reported_at)
    # the segments leave the gap out: the old one ends at the last heartbeat, the new one starts healthy
    old_segment = ReservationSegment.objects.get(reservation_id=booked["id"], node=first)
    new_segment = ReservationSegment.objects.get(reservation_id=booked["id"], node=second)
    assert old_segment.ended_at == last_heartbeat and new_segment.started_at == new.reported_at
    assert new_segment.ended_at is None
    reasons = [c["reason_code"] for c in active["timeline"]]
    assert "failover_moved" in reasons and reasons[-1] == "rehomed_healthy"
    assert ReliabilityEvent.objects.filter(node=first, kind="failover").count() == 1
    # the old node, if it ever comes back, is told to stop (its assignment is closed)
    assert NodeAssignment.objects.get(reservation_id=booked["id"], node=first).desired == "stop"


def test_failover_to_a_model_the_buyer_accepted(world, celery_worker_process):
    cluster = ClusterFactory()
    h100 = NodeFactory(cluster=cluster, hostname="ops-alt-h100", card_count=4)
    offer = OfferFactory(cluster=cluster)
    a100_model = accelerator("nvidia-a100-sxm4-80gb")
    booked, agent = _active_on(world, offer, h100, alternatives=[a100_model.name])
    a100 = NodeFactory(cluster=cluster, hostname="ops-alt-a100", card_count=4, accelerator_model=a100_model)
    OfferFactory(cluster=cluster, accelerator_model=a100_model, price_per_card_hour_minor=100)
    world["agent_for"](a100)
    silence(world, agent, h100)
    active = back_in_service(world, booked["id"])
    db = Reservation.objects.get(pk=booked["id"])
    assert db.accelerator_model_id == a100_model.pk
    assert db.price_per_card_hour_minor == offer.price_per_card_hour_minor  # the price locked at booking
    assert NodeAssignment.objects.get(reservation_id=booked["id"], node=a100).state == "running"
    moved = next(c for c in active["timeline"] if c["reason_code"] == "failover_moved")
    assert "A100" in moved["reason"]


def test_nothing_free_ends_the_reservation_with_notice_and_bills_until_the_last_heartbeat(world, celery_worker_process):
    node = NodeFactory(hostname="ops-none-a", card_count=4)
    offer = OfferFactory(cluster=node.cluster)
    booked, agent = _active_on(world, offer, node)
    booked_end = Reservation.objects.get(pk=booked["id"]).end
    last_heartbeat = silence(world, agent, node)
    ended = status_is(world, booked["id"], "completed")
    db = Reservation.objects.get(pk=booked["id"])
    assert db.active_to == last_heartbeat and db.end == last_heartbeat
    assert ended["timeline"][-1]["reason_code"] == "failover_no_capacity"
    assert "no equivalent cards were free" in ended["timeline"][-1]["reason"]
    served = ReservationSegment.objects.get(reservation_id=booked["id"])
    assert served.ended_at == last_heartbeat
    assert db.billed_price_minor == card_seconds_price_minor(
        [(db.price_per_card_hour_minor, 4 * int((served.ended_at - served.started_at).total_seconds()))])
    downtime = ReservationDowntime.objects.get(reservation_id=booked["id"])
    assert (downtime.started_at, downtime.ended_at) == (last_heartbeat, booked_end)
    assert "no equivalent cards were free" in buyer_page(world, booked["id"])


def test_a_move_whose_new_boot_fails_ends_the_reservation_with_notice(world, celery_worker_process):
    cluster = ClusterFactory()
    first = NodeFactory(cluster=cluster, hostname="ops-mv-a", card_count=4)
    offer = OfferFactory(cluster=cluster)
    booked, agent = _active_on(world, offer, first)
    booked_end = Reservation.objects.get(pk=booked["id"]).end
    second = NodeFactory(cluster=cluster, hostname="ops-mv-b", card_count=4)
    world["agent_for"](second, fail_boot=True)
    last_heartbeat = silence(world, agent, first)
    # when the failover's target node cannot start the workload
    ended = status_is(world, booked["id"], "completed")
    # then the move is given up: ended at the failure report, with the node's reason on the timeline
    failed = NodeAssignment.objects.get(reservation_id=booked["id"], node=second)
    db = Reservation.objects.get(pk=booked["id"])
    assert failed.state == "failed" and db.active_to == failed.reported_at == db.end
    assert ended["timeline"][-1]["reason_code"] == "move_boot_failed"
    assert SIMULATED_BOOT_FAILURE in ended["timeline"][-1]["reason"]
    # nothing after the last heartbeat is billed: the new cards never served
    segments = list(ReservationSegment.objects.filter(reservation_id=booked["id"]))
    assert [(s.node_id, s.ended_at) for s in segments] == [(first.pk, last_heartbeat)]
    downtime = ReservationDowntime.objects.get(reservation_id=booked["id"])
    assert (downtime.started_at, downtime.ended_at) == (last_heartbeat, booked_end)
    assert not NodeAssignment.objects.filter(reservation_id=booked["id"], desired="run").exists()
    assert "could not start on node ops-mv-b" in buyer_page(world, booked["id"])


def test_a_workload_that_dies_while_active_fails_that_share_over(world, celery_worker_process):
    # given an active 4-card reservation on an 8-card node whose agent keeps heartbeating
    node = NodeFactory(hostname="ops-crash-a", card_count=8)
    offer = OfferFactory(cluster=node.cluster)
    booked, agent = _active_on(world, offer, node)
    crashed = NodeAssignment.objects.get(reservation_id=booked["id"])
    # when the workload dies on the node (the report the agent sends when a container exits)
    client = AgentClient(server=world["url"], token=agent.key, timeout=10)
    answer = client.report(crashed.pk, "failed", reason="the workload's container is no longer running (exit 137)")
    client.session.close()
    crashed.refresh_from_db()
    at = crashed.reported_at
    # then it does not keep billing as if served: the share moved at the report (to the node's 4 free
    # cards), the old container is stopped, and the real agent brings it up on the new cards
    assert answer["reservation_status"] == "migrating"
    active = back_in_service(world, booked["id"])
    assert NodeAssignment.objects.get(pk=crashed.pk).state == "stopped"
    new = NodeAssignment.objects.get(reservation_id=booked["id"], state="running")
    assert set(new.device_ids).isdisjoint(crashed.device_ids) and new.node_id == node.pk
    downtime = ReservationDowntime.objects.get(reservation_id=booked["id"])
    assert (downtime.node_id, downtime.started_at, downtime.ended_at) == (node.pk, at, new.reported_at)
    old, fresh = ReservationSegment.objects.filter(reservation_id=booked["id"]).order_by("started_at")
    assert old.ended_at == at and fresh.started_at == new.reported_at
    assert "workload_failed_moved" in [c["reason_code"] for c in active["timeline"]]
    assert ReliabilityEvent.objects.filter(node=node, kind="failover").count() == 1
