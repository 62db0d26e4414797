"""End to end over real HTTP (live_server), with the real Celery worker and Redis, and a test agent on the
public agent API: booked -> provisioning -> active -> usage ingested -> released (active_from/active_to
recorded), and a failed boot with nothing to pay and the reason on the buyer's page."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.test import Client

from accounts.services import api_token_create, ssh_key_add
from inventory.agent_services import node_agent_token_create
from marketplace.models import NodeAssignment, Reservation, UsageSample
from tests.accounts.ssh_key_samples import ED25519
from tests.factories import NodeFactory, OfferFactory, catalog_loaded, member
from tests.marketplace.provisioning_agent import TestAgent

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def world(live_server, request):
    catalog_loaded()
    node = NodeFactory(hostname="e2e-node-a", card_count=4)
    offer = OfferFactory(cluster=node.cluster)
    user = member(kind="buyer")
    organization = user.memberships.get().organization
    ssh_key_add(user=user, name="laptop", public_key=ED25519)
    _token, api_key = api_token_create(user=user, organization=organization, name="e2e")
    _agent_token, agent_key = node_agent_token_create(node=node)
    buyer = requests.Session()
    buyer.headers["Authorization"] = f"Token {api_key}"
    request.addfinalizer(buyer.close)
    return {"node": node, "offer": offer, "user": user, "buyer": buyer, "agent_key": agent_key, "url": live_server.url}


def book_now(world, cards=4) -> dict:
    start = datetime.now(UTC)
    response = world["buyer"].post(f"{world['url']}/api/reservations/", json={
        "offer": world["offer"].pk, "card_count": cards, "start": _iso(start), "end": _iso(start + timedelta(hours=2)),
    }, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def buyer_reservation(world, reservation_id) -> dict:
    response = world["buyer"].get(f"{world['url']}/api/reservations/{reservation_id}/", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_booked_provisioning_active_usage_released(world, celery_worker_process, request):
    agent = TestAgent(server=world["url"], key=world["agent_key"])
    request.addfinalizer(agent.close)
    # given a booking over HTTP that starts now: the provision task is enqueued after its commit
    booked = book_now(world)
    assert booked["status"] == "requested" and booked["connection"] is None
    # when the worker has published the assignment and the agent polled it
    first = agent.poll_until(lambda: agent.client.assignments()["assignments"] or None)
    assert first[0]["reservation"] == booked["id"] and first[0]["ssh_public_keys"] == [ED25519]
    assert first[0]["image"] == booked["image"]
    # then the agent's running report activated it, from the arrival of that report
    reservation = agent.poll_until(lambda: (r := buyer_reservation(world, booked["id"]))["status"] == "active" and r)
    assignment = NodeAssignment.objects.get(reservation_id=booked["id"])
    assert [state for _, state, _ in agent.reports] == ["running"]
    assert agent.reports[0][2] == {"id": assignment.pk, "state": "running", "desired": "run", "reservation_status": "active"}
    db = Reservation.objects.get(pk=booked["id"])
    assert db.active_from == assignment.reported_at and db.active_to is None
    assert [c.to_status for c in db.status_changes.all()] == ["requested", "provisioning", "provisioning", "active"]
    assert reservation["connection"]["command"] == f"ssh -p {assignment.ssh_port} root@e2e-node-a"

    # when the agent posts usage for its cards (the window up to now, inside the active period)
    device_ids = sorted(assignment.device_ids)
    window_start = db.start
    window_end = datetime.now(UTC).replace(microsecond=0)
    if window_end <= window_start:
        window_end = window_start + timedelta(seconds=1)
        import time

        time.sleep(max(0.0, (window_end - datetime.now(UTC)).total_seconds()) + 0.05)
    seconds = (window_end - window_start).total_seconds()
    samples = [{
        "sample_id": str(uuid.uuid4()), "device": device_id, "window_start": _iso(window_start), "window_end": _iso(window_end),
        "busy_seconds": seconds / 2, "utilization_percent": 50.0, "memory_used_mib": 1000, "power_watts": 300.0,
    } for device_id in device_ids]
    assert agent.client.usage(samples) == {"received": 4, "new": 4, "duplicates": 0}
    # then it is stored, attributed to the reservation
    assert UsageSample.objects.filter(reservation_id=booked["id"]).count() == 4

    # when the buyer releases it over HTTP
    released = world["buyer"].post(f"{world['url']}/api/reservations/{booked['id']}/release/", timeout=30)
    assert released.status_code == 200, released.text
    # then service ended at the release instant and the node is told to stop; the agent confirms
    agent.poll_until(lambda: NodeAssignment.objects.get(pk=assignment.pk).stopped_at is not None)
    db.refresh_from_db()
    assert db.status == "completed" and db.active_to == db.released_at and db.active_from < db.active_to
    assert [state for _, state, _ in agent.reports] == ["running", "stopped"]
    assert buyer_reservation(world, booked["id"])["connection"] is None
    assert agent.client.assignments()["assignments"] == []


def test_a_failed_boot_costs_nothing_and_its_reason_is_on_the_page(world, celery_worker_process, request):
    agent = TestAgent(server=world["url"], key=world["agent_key"], fail_boot_with="nvidia-container-cli: device error")
    request.addfinalizer(agent.close)
    booked = book_now(world)
    # when the node reports the boot failed
    reservation = agent.poll_until(lambda: (r := buyer_reservation(world, booked["id"]))["status"] == "failed" and r)
    # then there is nothing to pay, no service period, the cards are free again
    assert reservation["total_price_minor"] == 0 and reservation["active_from"] is None and reservation["connection"] is None
    assert reservation["timeline"][-1]["reason_code"] == "boot_failed"
    assert "nvidia-container-cli: device error" in reservation["timeline"][-1]["reason"]
    assert book_now(world)["status"] == "requested"  # the same 4 cards could be booked again
    # and the buyer's page shows why (over HTTP, signed in)
    browser = Client()
    browser.force_login(world["user"])
    page = requests.get(f"{world['url']}/market/reservations/{booked['id']}/",
                        cookies={"sessionid": browser.cookies["sessionid"].value}, timeout=30)
    assert page.status_code == 200
    assert 'data-testid="failure-reason"' in page.text and "nvidia-container-cli: device error" in page.text
