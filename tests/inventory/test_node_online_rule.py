"""Only a node whose agent reported and heartbeats is on the market; the demo's stand-in agents."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Membership, Organization
from inventory.agent_services import nodes_demo_heartbeat, nodes_mark_stale
from inventory.models import Node, NodeStatusChange
from inventory.services import node_set_status
from tests.factories import ClusterFactory, NodeFactory, UserFactory, member


@pytest.mark.django_db
def test_a_provider_cannot_put_a_node_online_that_no_agent_has_reported(client):
    user = member(kind="provider")
    node = NodeFactory(cluster=ClusterFactory(site__owner=user.memberships.get().organization), status=Node.Status.REGISTERED)
    client.force_login(user)
    response = client.patch(f"/api/nodes/{node.pk}/", {"status": "online"}, content_type="application/json")
    assert response.status_code == 400
    assert "agent" in response.json()["error"]["fields"]["status"][0]
    node.refresh_from_db()
    assert node.status == Node.Status.REGISTERED
    assert not NodeStatusChange.objects.filter(node=node).exists()


@pytest.mark.django_db
def test_back_from_maintenance_needs_a_fresh_heartbeat(settings):
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
    node = NodeFactory(status=Node.Status.MAINTENANCE, last_heartbeat_at=timezone.now() - timedelta(minutes=10))
    with pytest.raises(ValidationError):
        node_set_status(node=node, status=Node.Status.ONLINE)
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())
    assert node_set_status(node=node, status=Node.Status.ONLINE).status == Node.Status.ONLINE


def _demo_node(**kwargs):
    provider = member(kind="provider")
    provider.email = f"owner{provider.pk}@yunhe.demo.computeflow.test"
    provider.save()
    organization = provider.memberships.get().organization
    Organization.objects.filter(pk=organization.pk).update(is_demo=True)  # as seed_demo marks it
    return NodeFactory(cluster=ClusterFactory(site__owner=organization), **kwargs)


@pytest.mark.django_db
def test_the_demo_agents_keep_demo_nodes_on_the_market_only_when_turned_on(settings):
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
    old = timezone.now() - timedelta(minutes=30)
    demo = _demo_node(last_heartbeat_at=old)
    real = NodeFactory(last_heartbeat_at=old)  # not a demo organization: its agent really is quiet
    settings.DEMO_AGENTS = False
    assert nodes_demo_heartbeat() == 0
    settings.DEMO_AGENTS = True
    nodes_demo_heartbeat()
    moved = nodes_mark_stale()
    assert moved == [real.pk]
    assert Node.objects.get(pk=demo.pk).status == Node.Status.ONLINE


@pytest.mark.django_db
def test_the_demo_agents_revive_nodes_the_sweep_took_off_but_not_nodes_listed_offline(settings):
    # (swept while the stand-in agents were off: with them on, the sweep lets them beat first)
    settings.DEMO_AGENTS = False
    old = timezone.now() - timedelta(hours=1)
    swept = _demo_node(last_heartbeat_at=old)
    assert nodes_mark_stale() == [swept.pk]
    assert Node.objects.get(pk=swept.pk).status == Node.Status.UNHEALTHY
    settings.DEMO_AGENTS = True
    listed_offline = _demo_node(status=Node.Status.OFFLINE)
    NodeStatusChange.objects.create(node=listed_offline, from_status="online", to_status="offline", reason="rack power work")
    nodes_demo_heartbeat()
    assert Node.objects.get(pk=swept.pk).status == Node.Status.ONLINE
    assert Node.objects.get(pk=listed_offline.pk).status == Node.Status.OFFLINE


@pytest.mark.django_db
def test_a_real_providers_stopped_agent_leaves_the_market_even_with_demo_agents_on(settings):
    # Given DEMO_AGENTS on, a demo node, and real providers' nodes whose agents stopped 30 minutes
    # ago: one whose organization invited a demo user, one whose owner signed up with an address
    # of the demo mail domain (sign-up does not verify addresses)
    settings.DEMO_AGENTS = True
    settings.NODE_HEARTBEAT_TIMEOUT_SECONDS = 180
    old = timezone.now() - timedelta(minutes=30)
    demo = _demo_node(last_heartbeat_at=old)
    invited = NodeFactory(last_heartbeat_at=old)
    guest = UserFactory(email="guest@demo.computeflow.test")
    Membership.objects.create(organization=invited.cluster.site.owner, user=guest, role=Membership.Role.MEMBER)
    lookalike_owner = member(kind="provider")
    lookalike_owner.email = "ops@fake.demo.computeflow.test"
    lookalike_owner.save()
    lookalike = NodeFactory(cluster=ClusterFactory(site__owner=lookalike_owner.memberships.get().organization), last_heartbeat_at=old)
    # When the demo agents beat and the stale sweep runs
    nodes_demo_heartbeat()
    moved = nodes_mark_stale()
    # Then the real nodes turn unhealthy and only the demo node stays online
    assert sorted(moved) == sorted([invited.pk, lookalike.pk])
    assert Node.objects.get(pk=demo.pk).status == Node.Status.ONLINE
    assert Node.objects.get(pk=invited.pk).status == Node.Status.UNHEALTHY
