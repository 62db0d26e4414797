"""Provisioning through the agent API: what each node is told, its reports, activation, failure, the
deadline, stops on release/cancel, and the buyer's connection details (real PostgreSQL, DRF over the
test client; the end-to-end run over real HTTP with a real worker is test_provisioning_e2e.py)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.services import ssh_key_add
from inventory.agent_services import node_agent_token_create
from inventory.models import DeviceAllocation, Node
from marketplace.models import NodeAssignment, Reservation
from marketplace.provisioning.services import reservation_provision, reservations_sweep
from marketplace.reasons import ReasonCode
from marketplace.services import reservation_cancel, reservation_create, reservation_release, reservation_set_status
from tests.accounts.ssh_key_samples import ED25519
from tests.factories import NodeFactory, OfferFactory, member

pytestmark = pytest.mark.django_db


def agent(node) -> APIClient:
    _token, key = node_agent_token_create(node=node)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Agent {key}")
    return client


def book(offer, user, *, cards=12, start=None, hours=4) -> Reservation:
    start = start or timezone.now()
    reservation, _ = reservation_create(organization=user.memberships.get().organization, created_by=user, offer=offer,
                                        card_count=cards, start=start, end=start + timedelta(hours=hours))
    return reservation


@pytest.fixture
def nodes(small_offer):
    return {node.hostname: node for node in Node.objects.filter(cluster=small_offer.cluster)}


@pytest.fixture
def agents(nodes):
    return {hostname: agent(node) for hostname, node in nodes.items()}


@pytest.fixture
def started(small_offer, buyer):
    """A 12-card reservation (8 on h100-a, 4 on h100-b) starting now, provisioned: published to both nodes."""
    ssh_key_add(user=buyer, name="laptop", public_key=ED25519)
    reservation = book(small_offer, buyer)
    assert reservation_provision(reservation.pk).published == 2
    reservation.refresh_from_db()
    return reservation


def listed(client) -> list[dict]:
    response = client.get("/api/agent/assignments/")
    assert response.status_code == 200, response.content
    return response.json()["assignments"]


def report(client, assignment_id, **body):
    return client.post(f"/api/agent/assignments/{assignment_id}/report/", body, format="json")


def only(client) -> dict:
    [assignment] = listed(client)
    return assignment


def buyer_view(user, reservation_id):
    client = APIClient()
    client.force_login(user)
    return client.get(f"/api/reservations/{reservation_id}/")


# --- what each node is told -------------------------------------------------------------------


def test_each_node_lists_only_its_own_assignment_with_what_to_run(started, agents, nodes, small_offer, buyer):
    # when each node's agent polls
    a, b = only(agents["h100-a"]), only(agents["h100-b"])
    # then each sees exactly its share of the reservation, with the contract's fields
    assert set(a) == {"id", "reservation", "desired", "state", "stack", "devices", "image", "ssh_public_keys", "ssh_port",
                      "deadline", "ends_at"}
    assert [d["index"] for d in a["devices"]] == list(range(8)) and len(b["devices"]) == 4
    assert a["devices"][0]["serial"] == "h100-a-gpu0"
    held = set(DeviceAllocation.objects.filter(reservation_id=started.pk).values_list("device__node__hostname", "device__index"))
    assert {("h100-a", d["index"]) for d in a["devices"]} | {("h100-b", d["index"]) for d in b["devices"]} == held
    assert (a["reservation"], a["desired"], a["state"], a["stack"]) == (started.pk, "run", "pending", "cuda")
    assert a["image"] == started.launch_image.image == "nvidia/cuda:12.6.3-base-ubuntu24.04"
    assert a["ssh_public_keys"] == [ED25519]
    assert a["ssh_port"] == b["ssh_port"] == 2200  # distinct per node, not across nodes
    assert a["ends_at"].startswith(started.end.strftime("%Y-%m-%dT%H:%M"))
    deadline = NodeAssignment.objects.get(pk=a["id"]).deadline
    assert timedelta(seconds=590) < deadline - timezone.now() <= timedelta(seconds=600)
    # and a node that holds none of it sees nothing; an unauthenticated caller is refused
    stranger = agent(NodeFactory(cluster=small_offer.cluster, hostname="h100-c"))
    assert listed(stranger) == []
    assert APIClient().get("/api/agent/assignments/").status_code == 401
    # and a node cannot report on another node's assignment: 404, nothing changed
    response = report(agents["h100-b"], a["id"], state="running")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert NodeAssignment.objects.get(pk=a["id"]).state == "pending"


def test_two_reservations_on_one_node_get_distinct_ports_and_a_stopped_ones_port_is_free_again(catalog, buyer):
    # given a one-node offer and two bookings of half its cards each
    node = NodeFactory(hostname="solo")
    offer = OfferFactory(cluster=node.cluster)
    solo = agent(node)
    first, second = book(offer, buyer, cards=4), book(offer, buyer, cards=4)
    reservation_provision(first.pk), reservation_provision(second.pk)
    assert sorted(a["ssh_port"] for a in listed(solo)) == [2200, 2201]
    # when the first is released and its node confirms the stop
    assert all(report(solo, a["id"], state="running").status_code == 200 for a in listed(solo))
    reservation_release(reservation=first, actor=buyer)
    stopping = next(a for a in listed(solo) if a["reservation"] == first.pk)
    assert stopping["desired"] == "stop"
    assert report(solo, stopping["id"], state="stopped").status_code == 200
    # then a third booking on that node gets the freed port
    third = book(offer, buyer, cards=4)
    reservation_provision(third.pk)
    assert NodeAssignment.objects.get(reservation=third).ssh_port == stopping["ssh_port"]


# --- reports: validation and idempotency ---------------------------------------------------------


@pytest.mark.parametrize("body, field", [
    ({}, "state"),
    ({"state": "booting"}, "state"),
    ({"state": "failed"}, "reason"),
    ({"state": "failed", "reason": "   "}, "reason"),
    ({"state": "failed", "reason": "x" * 501}, "reason"),
    ({"state": "running", "uptime": 3}, "uptime"),
    ({"state": "running", "devices": [{"index": 0}]}, "devices"),
    ({"state": "running", "devices": [{"index": 0, "healthy": True}, {"index": 0, "healthy": True}]}, "devices"),
    ({"state": "running", "devices": [{"index": 9, "healthy": True}]}, "devices"),  # not one of its devices
    ({"state": "running", "devices": "all"}, "devices"),
])
def test_a_malformed_report_is_a_400_naming_the_field_and_changes_nothing(started, agents, body, field):
    assignment = only(agents["h100-a"])
    response = report(agents["h100-a"], assignment["id"], **body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]
    assert NodeAssignment.objects.get(pk=assignment["id"]).state == "pending"
    assert Reservation.objects.get(pk=started.pk).status == "provisioning"


def test_a_repeated_report_changes_nothing_and_answers_the_same(started, agents):
    a, b = only(agents["h100-a"]), only(agents["h100-b"])
    first = report(agents["h100-a"], a["id"], state="running", devices=[{"index": i, "healthy": True} for i in range(8)])
    assert first.json() == {"id": a["id"], "state": "running", "desired": "run", "reservation_status": "provisioning"}
    reported_at = NodeAssignment.objects.get(pk=a["id"]).reported_at
    again = report(agents["h100-a"], a["id"], state="running")
    assert again.status_code == 200 and again.json() == first.json()
    assert NodeAssignment.objects.get(pk=a["id"]).reported_at == reported_at
    # and once active, the same last report again changes neither the status nor active_from
    report(agents["h100-b"], b["id"], state="running")
    active_from = Reservation.objects.get(pk=started.pk).active_from
    events = started.status_changes.count()
    assert report(agents["h100-b"], b["id"], state="running").json()["reservation_status"] == "active"
    started.refresh_from_db()
    assert started.active_from == active_from and started.status_changes.count() == events


# --- activation ------------------------------------------------------------------------------------


def test_a_two_node_reservation_turns_active_only_when_both_report_running_at_the_last_arrival(started, agents, buyer):
    a, b = only(agents["h100-a"]), only(agents["h100-b"])
    # when the first node reports running
    assert report(agents["h100-a"], a["id"], state="running").json()["reservation_status"] == "provisioning"
    # then it is still provisioning: nothing billed, no connection details
    started.refresh_from_db()
    assert started.status == "provisioning" and started.active_from is None and not started.segments.exists()
    assert buyer_view(buyer, started.pk).json()["connection"] is None
    # when the second one reports
    before = timezone.now()
    assert report(agents["h100-b"], b["id"], state="running").json()["reservation_status"] == "active"
    after = timezone.now()
    # then it is active from the arrival of that last report (the server's clock), a segment per node from there
    started.refresh_from_db()
    last = NodeAssignment.objects.get(pk=b["id"]).reported_at
    assert started.status == "active" and started.active_from == last and before <= last <= after
    assert NodeAssignment.objects.get(pk=a["id"]).reported_at < last
    assert sorted((s.node.hostname, len(s.device_ids), s.started_at) for s in started.segments.all()) == [
        ("h100-a", 8, last), ("h100-b", 4, last)]
    assert started.status_changes.last().reason_code == ReasonCode.HANDED_OVER


# --- failure -----------------------------------------------------------------------------------------


def test_a_failed_boot_fails_the_reservation_frees_the_cards_costs_nothing_and_shows_why(started, agents, buyer):
    a, b = only(agents["h100-a"]), only(agents["h100-b"])
    report(agents["h100-b"], b["id"], state="running")
    # when node a reports the boot failed
    response = report(agents["h100-a"], a["id"], state="failed", reason="image pull failed: manifest unknown")
    # then the reservation failed: nothing to pay, the cards free, the reason in the timeline and on the page
    assert response.status_code == 200 and response.json() == {
        "id": a["id"], "state": "failed", "desired": "stop", "reservation_status": "failed"}
    started.refresh_from_db()
    assert started.status == "failed" and started.total_price_minor == 0 and started.active_from is None
    assert not DeviceAllocation.objects.filter(reservation_id=started.pk, is_active=True).exists()
    event = started.status_changes.last()
    assert event.reason_code == ReasonCode.BOOT_FAILED
    assert "h100-a" in event.reason_text and "image pull failed: manifest unknown" in event.reason_text
    page = Client()
    page.force_login(buyer)
    html = page.get(f"/market/reservations/{started.pk}/").content.decode()
    assert 'data-testid="failure-reason"' in html and "image pull failed: manifest unknown" in html
    # and both nodes are told to stop (the running one too), listed until they confirm
    assert [x["desired"] for x in (only(agents["h100-a"]), only(agents["h100-b"]))] == ["stop", "stop"]
    # a late "running" from the failed node is refused with assignment_closed (the agent stops the container)
    late = report(agents["h100-a"], a["id"], state="running")
    assert late.status_code == 409 and late.json()["error"]["code"] == "assignment_closed"
    # the same failure again is harmless
    assert report(agents["h100-a"], a["id"], state="failed", reason="image pull failed: manifest unknown").status_code == 200
    # once each confirms the stop, nothing is listed any more
    for hostname, item in (("h100-a", a), ("h100-b", b)):
        assert report(agents[hostname], item["id"], state="stopped").json()["state"] == "stopped"
        assert listed(agents[hostname]) == []


def test_a_multi_line_failure_reason_is_kept_as_one_line(started, agents):
    a = only(agents["h100-a"])
    response = report(agents["h100-a"], a["id"], state="failed", reason="pull failed:\n\tmanifest unknown\r")
    assert response.status_code == 200
    assert NodeAssignment.objects.get(pk=a["id"]).reason == "pull failed: manifest unknown"


def test_a_running_report_with_an_unhealthy_device_counts_as_a_failed_boot(started, agents):
    a = only(agents["h100-a"])
    devices = [{"index": i, "healthy": i != 3} for i in range(8)]
    response = report(agents["h100-a"], a["id"], state="running", devices=devices, reason="ECC errors")
    assert response.json()["state"] == "failed" and response.json()["reservation_status"] == "failed"
    assert "device(s) 3 unhealthy: ECC errors" in started.status_changes.last().reason_text


def test_a_boot_not_running_by_its_deadline_fails_through_the_sweeper(started, agents):
    a, b = only(agents["h100-a"]), only(agents["h100-b"])
    report(agents["h100-a"], a["id"], state="running")
    deadline = NodeAssignment.objects.get(pk=b["id"]).deadline
    # when the sweeper runs before the deadline, nothing happens
    assert reservations_sweep(now=deadline - timedelta(seconds=1))["deadline_missed"] == 0
    # when it runs after node b's deadline passed without a report
    assert reservations_sweep(now=deadline + timedelta(seconds=1))["deadline_missed"] == 1
    # then the reservation failed with the coded reason, nothing to pay, cards freed, both nodes told to stop
    started.refresh_from_db()
    assert started.status == "failed" and started.total_price_minor == 0
    event = started.status_changes.last()
    assert event.reason_code == ReasonCode.BOOT_DEADLINE_MISSED and event.reason_params["node"] == "h100-b"
    assert not DeviceAllocation.objects.filter(reservation_id=started.pk, is_active=True).exists()
    assert set(NodeAssignment.objects.filter(reservation=started).values_list("desired", flat=True)) == {"stop"}
    # and node b's late "running" is refused; a second sweep changes nothing
    assert report(agents["h100-b"], b["id"], state="running").status_code == 409
    assert reservations_sweep(now=deadline + timedelta(seconds=2)) == {"provisioned": 0, "deadline_missed": 0, "stops_resent": 0}


# --- stops -----------------------------------------------------------------------------------------


def test_an_early_release_tells_every_node_to_stop_and_records_active_to_at_the_release(started, agents, buyer):
    for hostname in ("h100-a", "h100-b"):
        report(agents[hostname], only(agents[hostname])["id"], state="running")
    # when the buyer releases it
    released = reservation_release(reservation=Reservation.objects.get(pk=started.pk), actor=buyer)
    # then service ended at the release instant (not when the nodes confirm) and both nodes are to stop
    assert released.status == "completed" and released.active_to == released.released_at
    stops = [only(agents[hostname]) for hostname in ("h100-a", "h100-b")]
    assert [s["desired"] for s in stops] == ["stop", "stop"]
    assert set(NodeAssignment.objects.filter(reservation=started).values_list("stop_requested_at", flat=True)) == {released.released_at}
    # a confirmation closes each; the period stays what the lifecycle recorded
    report(agents["h100-a"], stops[0]["id"], state="stopped")
    released.refresh_from_db()
    assert released.active_to == released.released_at
    assert NodeAssignment.objects.get(pk=stops[0]["id"]).stopped_at is not None


def test_a_cancel_before_the_start_tells_a_published_node_to_stop(small_offer, buyer, soon, agents):
    # given a booking tomorrow that was published to its node ahead (provisioned as of its start)
    reservation = book(small_offer, buyer, cards=4, start=soon)
    reservation_provision(reservation.pk, now=soon)
    # when the buyer cancels it before the start
    reservation_cancel(reservation=Reservation.objects.get(pk=reservation.pk), actor=buyer)
    # then the node is to stop it
    assert only(agents["h100-a"])["desired"] == "stop"


def test_the_period_end_tells_the_nodes_to_stop(started, agents):
    from marketplace.services import reservations_advance

    for hostname in ("h100-a", "h100-b"):
        report(agents[hostname], only(agents[hostname])["id"], state="running")
    reservations_advance(now=started.end + timedelta(minutes=1))
    started.refresh_from_db()
    assert started.status == "completed" and started.active_to == started.end
    assert [only(agents[h])["desired"] for h in ("h100-a", "h100-b")] == ["stop", "stop"]


# --- the sweeper re-drives ---------------------------------------------------------------------------


def test_the_sweeper_provisions_a_started_booking_whose_task_was_lost_and_publishes_missing_nodes(small_offer, buyer, agents):
    # given a booking that started with its task lost (never provisioned), and one moved to provisioning
    # by a worker that died before publishing
    lost = book(small_offer, buyer, cards=4)
    half = book(small_offer, buyer, cards=8)
    reservation_set_status(reservation=half, status=Reservation.Status.PROVISIONING, reason_code=ReasonCode.START_REACHED)
    nodes_held = sum(
        DeviceAllocation.objects.filter(reservation_id=r.pk).values("node_id").distinct().count() for r in (lost, half)
    )
    # when the sweeper runs, then it publishes an assignment per node each holds
    assert reservations_sweep()["provisioned"] == nodes_held
    # then both are provisioning with every node published, and a second sweep publishes nothing more
    assert {r.status for r in Reservation.objects.filter(pk__in=[lost.pk, half.pk])} == {"provisioning"}
    for reservation in (lost, half):
        assert sorted(d for a in reservation.assignments.all() for d in a.device_ids) == sorted(
            DeviceAllocation.objects.filter(reservation_id=reservation.pk).values_list("device_id", flat=True))
    assert reservations_sweep()["provisioned"] == 0


def test_unconfirmed_stops_are_sent_again_by_the_sweeper(started, agents, buyer):
    released = reservation_release(reservation=Reservation.objects.get(pk=started.pk), actor=buyer)
    assert reservations_sweep(now=released.released_at + timedelta(minutes=1))["stops_resent"] == 0
    assert reservations_sweep(now=released.released_at + timedelta(minutes=6))["stops_resent"] == 2
    # still listed to the nodes until they confirm
    assert [only(agents[h])["desired"] for h in ("h100-a", "h100-b")] == ["stop", "stop"]


# --- connection details ------------------------------------------------------------------------------


def test_connection_details_appear_only_while_active_and_only_to_the_buyer_organization(started, agents, buyer):
    page = Client()
    page.force_login(buyer)
    # before it is active: none, in the API and on the page
    assert buyer_view(buyer, started.pk).json()["connection"] is None
    assert 'data-testid="connection"' not in page.get(f"/market/reservations/{started.pk}/").content.decode()
    for hostname in ("h100-a", "h100-b"):
        report(agents[hostname], only(agents[hostname])["id"], state="running")
    # while active: host, port, user and the command, per node
    connection = buyer_view(buyer, started.pk).json()["connection"]
    assert connection == {
        "host": "h100-a", "port": 2200, "user": "root", "command": "ssh -p 2200 root@h100-a",
        "nodes": [{"host": "h100-a", "port": 2200, "command": "ssh -p 2200 root@h100-a"},
                  {"host": "h100-b", "port": 2200, "command": "ssh -p 2200 root@h100-b"}],
    }
    listing = APIClient()
    listing.force_login(buyer)
    assert listing.get("/api/reservations/").json()["results"][0]["connection"] == connection
    assert "ssh -p 2200 root@h100-a" in page.get(f"/market/reservations/{started.pk}/").content.decode()
    # another organization sees neither the reservation nor its details
    other = member(kind="buyer")
    assert buyer_view(other, started.pk).status_code == 404
    stranger_page = Client()
    stranger_page.force_login(other)
    assert stranger_page.get(f"/market/reservations/{started.pk}/").status_code == 404
    # after the release: gone again
    reservation_release(reservation=Reservation.objects.get(pk=started.pk), actor=buyer)
    assert buyer_view(buyer, started.pk).json()["connection"] is None


# --- a move (failover's reservation_rehome) and provisioning -------------------------------------------


def _active_four_cards(small_offer, buyer, agents):
    reservation = book(small_offer, buyer, cards=4)
    reservation_provision(reservation.pk)
    report(agents["h100-a"], only(agents["h100-a"])["id"], state="running")
    reservation.refresh_from_db()
    assert reservation.status == "active"
    return reservation


def test_a_move_to_another_node_publishes_there_and_turns_active_when_it_reports(small_offer, buyer, agents, nodes):
    from marketplace.services import reservation_rehome

    reservation = _active_four_cards(small_offer, buyer, agents)
    target = list(nodes["h100-b"].devices.order_by("index").values_list("pk", flat=True)[:4])
    # when failover moves the whole reservation to node b and provisions it
    reservation_rehome(reservation=reservation, to_device_ids=target, at=timezone.now())
    assert reservation_provision(reservation.pk).published == 1
    # then node a is to stop, node b to run the same workload on its 4 cards
    assert only(agents["h100-a"])["desired"] == "stop"
    moved = only(agents["h100-b"])
    assert (moved["desired"], moved["state"], len(moved["devices"])) == ("run", "pending", 4)
    assert Reservation.objects.get(pk=reservation.pk).status == "migrating"
    # when node b reports running, the reservation is active again and its new segment starts there
    assert report(agents["h100-b"], moved["id"], state="running").json()["reservation_status"] == "active"
    reservation.refresh_from_db()
    assert reservation.status_changes.last().reason_code == ReasonCode.REHOMED_HEALTHY
    assert reservation.segments.get(ended_at__isnull=True).node.hostname == "h100-b"
    assert buyer_view(buyer, reservation.pk).json()["connection"]["host"] == "h100-b"


def test_a_move_within_one_node_restarts_the_workload_on_the_new_devices(small_offer, buyer, agents, nodes):
    from marketplace.services import reservation_rehome

    reservation = _active_four_cards(small_offer, buyer, agents)
    first = only(agents["h100-a"])
    leaving = [d.pk for d in nodes["h100-a"].devices.filter(index__in=[0, 1])]
    arriving = [d.pk for d in nodes["h100-a"].devices.filter(index__in=[4, 5])]
    # when two of its cards are moved to two free cards of the same node
    reservation_rehome(reservation=reservation, from_device_ids=leaving, to_device_ids=arriving, at=timezone.now())
    reservation_provision(reservation.pk)
    # then the node is told to stop the old workload first (one open assignment per node) ...
    assert only(agents["h100-a"])["desired"] == "stop"
    # ... and once it confirms, the workload is published on the new set of cards
    report(agents["h100-a"], first["id"], state="stopped")
    second = only(agents["h100-a"])
    assert second["id"] != first["id"] and [d["index"] for d in second["devices"]] == [2, 3, 4, 5]
    assert report(agents["h100-a"], second["id"], state="running").json()["reservation_status"] == "active"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"state": st.sampled_from(["running", "failed", "stopped", "pending", ""])}, optional={
        "reason": st.one_of(st.text(max_size=600), _json),
        "devices": st.one_of(st.lists(st.fixed_dictionaries({"index": st.integers(-3, 70) | _json,
                                                             "healthy": st.booleans() | _json}), max_size=10), _json),
    }),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_report_body_answers_a_4xx_in_the_one_shape_or_200_never_a_500(started, agents, body):
    a = only(agents["h100-a"]) if listed(agents["h100-a"]) else None
    assignment_id = a["id"] if a else NodeAssignment.objects.filter(reservation=started).first().pk
    response = agents["h100-a"].post(f"/api/agent/assignments/{assignment_id}/report/", body, format="json")
    assert response.status_code in (200, 400, 404, 409), response.content
    if response.status_code != 200:
        assert set(response.json()["error"]) >= {"code", "message", "fields"}
