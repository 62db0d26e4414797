"""Only a node whose agent reported and heartbeats is on the market (the demo's simulated agents:
tests/inventory/test_demo_agents.py)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from inventory.models import Node, NodeStatusChange
from inventory.services import node_set_status
from tests.factories import ClusterFactory, NodeFactory, member


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
