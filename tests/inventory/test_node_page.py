"""The provider's node page: reported hardware, the mismatch flag, agent keys shown once."""

import pytest

from inventory.agent_services import node_agent_authenticate, node_agent_register, node_agent_token_create
from inventory.allocations import rentable_devices
from inventory.models import Node, NodeAgentToken
from tests.factories import ClusterFactory, NodeFactory, member


@pytest.fixture
def provider_node(db):
    user = member(kind="provider")
    organization = user.memberships.get().organization
    node = NodeFactory(cluster=ClusterFactory(site__owner=organization), card_count=8)
    return user, node


def test_a_key_created_on_the_page_is_shown_once_and_works_for_the_agent(client, provider_node):
    user, node = provider_node
    client.force_login(user)
    response = client.post(f"/provider/nodes/{node.pk}/agent-keys/", follow=True)
    key = response.context["new_key"]
    assert key.startswith("cfa_") and key in response.content.decode()
    assert node_agent_authenticate(key=key).node == node
    # shown once: the next view of the page no longer has it
    assert key not in client.get(f"/provider/nodes/{node.pk}/").content.decode()


def test_a_revoked_key_no_longer_authenticates(client, provider_node):
    user, node = provider_node
    token, key = node_agent_token_create(node=node)
    client.force_login(user)
    client.post(f"/provider/nodes/{node.pk}/agent-keys/{token.pk}/revoke/")
    assert node_agent_authenticate(key=key) is None


def test_the_page_shows_the_agents_mismatch_and_the_node_is_off_the_market(client, provider_node):
    user, node = provider_node
    token, _ = node_agent_token_create(node=node)
    node_agent_register(token=token, report={"model_name": "NVIDIA H100 80GB HBM3", "card_count": 6, "memory_gb": 80})
    client.force_login(user)
    body = client.get(f"/provider/nodes/{node.pk}/").content.decode()
    assert "agent sees 6 cards, listing says 8" in body
    assert not rentable_devices().filter(node=node).exists()
    # "Check again" does not wave the flag away while the report still contradicts the listing
    client.post(f"/provider/nodes/{node.pk}/mismatch/resolve/")
    assert Node.objects.get(pk=node.pk).mismatch_reason


def test_another_organizations_node_page_and_keys_are_404_and_unchanged(client, provider_node):
    _, node = provider_node
    token, key = node_agent_token_create(node=node)
    intruder = member(kind="provider")
    client.force_login(intruder)
    assert client.get(f"/provider/nodes/{node.pk}/").status_code == 404
    assert client.post(f"/provider/nodes/{node.pk}/agent-keys/").status_code == 404
    assert client.post(f"/provider/nodes/{node.pk}/agent-keys/{token.pk}/revoke/").status_code == 404
    assert NodeAgentToken.objects.filter(node=node).count() == 1
    assert node_agent_authenticate(key=key) is not None


def test_a_finance_viewer_may_look_but_not_create_keys(client, provider_node):
    _, node = provider_node
    viewer = member(organization=node.cluster.site.owner, role="finance_viewer")
    client.force_login(viewer)
    assert client.get(f"/provider/nodes/{node.pk}/").status_code == 200
    assert client.post(f"/provider/nodes/{node.pk}/agent-keys/").status_code == 403
    assert not NodeAgentToken.objects.filter(node=node).exists()
