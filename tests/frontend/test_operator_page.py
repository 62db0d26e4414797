"""The operators' page: only platform operators; lists failed nodes (last heartbeat, reservations on
them) and migrating reservations; "mark node failed" needs POST, CSRF, a reason and a confirmation,
is audited through node_set_status, and its failover moves the work."""

from datetime import timedelta

import pytest
from django.test import Client

from inventory.models import DeviceAllocation, Node, NodeStatusChange
from inventory.selectors import nodes_serving
from marketplace.models import Reservation
from marketplace.services import reservation_create
from marketplace.tasks import reservations_on_capacity_lost_task
from tests.factories import NodeFactory, OfferFactory, UserFactory, member, staff_group
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

PAGE = "/operator/"
ACTION = "/operator/nodes/fail/"


@pytest.fixture
def operator(db):
    user = UserFactory()
    user.groups.add(staff_group("operator"))
    return user


def _active_reservation(offer, buyer, soon):
    reservation, _ = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=8,
        start=soon, end=soon + timedelta(hours=4),
    )
    reservation = hand_over(reservation, at=soon + timedelta(minutes=5))
    assert reservation.status == Reservation.Status.ACTIVE
    node = Node.objects.get(pk=DeviceAllocation.objects.filter(reservation_id=reservation.pk).values("node_id")[:1])
    return reservation, node


@pytest.mark.parametrize("kind", ["buyer", "provider"])
def test_only_operators_open_the_page_or_post_the_action(client, small_offer, kind):
    node = small_offer.cluster.nodes.first()
    client.force_login(member(kind=kind))
    assert client.get(PAGE).status_code == 403
    response = client.post(ACTION, {"node": node.pk, "cause": "host_fault", "reason": "x", "confirm": "on"})
    assert response.status_code == 403
    assert Node.objects.get(pk=node.pk).status == Node.Status.ONLINE
    # anonymous visitors are sent to sign in; the navigation has no Operations link for them
    anonymous = Client()
    assert anonymous.get(PAGE).status_code == 302
    assert PAGE not in client.get("/").content.decode()


def test_the_action_needs_csrf_a_reason_and_a_confirmation(operator, small_offer):
    node = small_offer.cluster.nodes.first()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(operator)
    assert strict.post(ACTION, {"node": node.pk, "cause": "host_fault", "reason": "fan", "confirm": "on"}).status_code == 403
    client = Client()
    client.force_login(operator)
    assert client.get(ACTION).status_code == 405
    for missing in ("reason", "confirm"):
        data = {"node": node.pk, "cause": "host_fault", "reason": "fan", "confirm": "on"}
        data.pop(missing)
        response = client.post(ACTION, data)
        assert response.status_code == 400 and missing in response.context["form"].errors
    assert client.post(ACTION, {"node": 999999, "cause": "host_fault", "reason": "fan", "confirm": "on"}).status_code == 404
    assert Node.objects.get(pk=node.pk).status == Node.Status.ONLINE
    assert not NodeStatusChange.objects.filter(node=node).exists()


def test_marking_a_node_failed_moves_its_work_and_the_page_shows_it(operator, small_offer, buyer, soon):
    # given an active reservation on one node of a two-node cluster
    reservation, node = _active_reservation(small_offer, buyer, soon)
    client = Client()
    client.force_login(operator)
    assert 'href="/operator/"' in client.get("/").content.decode()  # in the operators' navigation
    # when the operator marks the node failed (then the task the commit enqueues runs)
    response = client.post(ACTION, {"node": node.pk, "cause": "host_fault", "reason": "PSU fire", "confirm": "on"})
    assert response.status_code == 302
    reservations_on_capacity_lost_task(node_ids=[node.pk])
    # then the node is unhealthy, audited with the operator and reason
    change = NodeStatusChange.objects.get(node=node, to_status="unhealthy")
    assert change.actor == operator and "PSU fire" in change.reason and change.cause == "host_fault"
    # and the work moved to the other node: migrating, nothing left on the failed one
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.MIGRATING
    held = DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True, period__endswith__gt=reservation.end - timedelta(minutes=1))
    assert held.count() == 8 and not held.filter(node=node).exists()
    # and the page lists the node and the migrating reservation
    page = client.get(PAGE)
    body = page.content.decode()
    assert page.status_code == 200
    assert f'data-node="{node.pk}"' in body and f'data-reservation="{reservation.pk}"' in body


def test_the_page_counts_reservations_still_on_a_failed_node(operator, catalog, buyer, soon):
    # a one-node cluster: an upcoming booking cannot move anywhere, so it stays on the failed node
    offer = OfferFactory(cluster=NodeFactory().cluster)
    reservation_create(organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=4,
                       start=soon, end=soon + timedelta(hours=4))
    node = offer.cluster.nodes.get()
    client = Client()
    client.force_login(operator)
    client.post(ACTION, {"node": node.pk, "cause": "network", "reason": "switch down", "confirm": "on"})
    reservations_on_capacity_lost_task(node_ids=[node.pk])
    page = client.get(PAGE)
    assert [(n.pk, n.reservations_affected) for n in page.context["nodes"]] == [(node.pk, 1)]


def test_the_page_lists_the_online_nodes_serving_reservations_with_their_ids(operator, small_offer, buyer, soon):
    # given an active reservation on one node (served from soon + 5 min) and an idle node beside it
    reservation, node = _active_reservation(small_offer, buyer, soon)
    idle = Node.objects.filter(cluster=small_offer.cluster).exclude(pk=node.pk).get()
    # then, while it is served, only its node is listed, with one reservation
    during = soon + timedelta(hours=1)
    assert [(n.pk, n.reservations_now) for n in nodes_serving(now=during)] == [(node.pk, 1)]
    assert idle.pk not in {n.pk for n in nodes_serving(now=during)}
    # before it starts and once the node is marked failed, nothing is listed
    assert list(nodes_serving(now=soon - timedelta(hours=1))) == []
    client = Client()
    client.force_login(operator)
    client.post(ACTION, {"node": node.pk, "cause": "host_fault", "reason": "fan failure", "confirm": "on"})
    assert node.pk not in {n.pk for n in nodes_serving(now=during)}
    # and the page shows the section (nothing is served at the real "now" of this test)
    body = client.get(PAGE).content.decode()
    assert "Online nodes serving reservations now" in body and "no online node serves a reservation right now" in body
