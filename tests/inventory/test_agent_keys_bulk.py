"""Agent keys for many nodes at once: a provider who imported 50 nodes asks once (API or page) and
gets every key, shown once - the API's answer or a downloadable CSV (hostname,node_id,token) - with
only hashes stored. All or nothing; scoped to the caller's organization; retired nodes refused."""

import csv
import io

import pytest

from inventory.agent_services import agent_keys_csv, node_agent_authenticate
from inventory.models import Node, NodeAgentToken
from tests.factories import ClusterFactory, NodeFactory

pytestmark = pytest.mark.django_db

BULK = "/api/agent/keys/bulk/"


@pytest.fixture
def imported(provider):
    """50 freshly imported nodes in the provider's cluster (registered, no agent key)."""
    return [
        NodeFactory(cluster=provider.cluster, hostname=f"gpu-{i:03d}", card_count=8, status=Node.Status.REGISTERED)
        for i in range(50)
    ]


def test_one_request_makes_a_working_key_for_each_node_and_stores_only_hashes(api, provider, imported):
    response = api.post(BULK, {"nodes": [node.pk for node in imported]}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["count"] == 50
    assert [row["hostname"] for row in body["keys"]] == sorted(node.hostname for node in imported)
    for row in body["keys"]:
        token = node_agent_authenticate(key=row["token"])
        assert token is not None and token.node_id == row["node"]
        assert row["token"] not in (token.key_hash, token.prefix)
    assert NodeAgentToken.objects.count() == 50


def test_the_keys_of_a_cluster_go_to_the_nodes_without_a_working_one(api, provider, imported):
    # Given a node that already has a key, and one whose only key was revoked
    api.post(f"/api/agent/nodes/{imported[0].pk}/keys/")
    revoked = api.post(f"/api/agent/nodes/{imported[1].pk}/keys/").json()
    api.post(f"/api/agent/keys/{revoked['id']}/revoke/")
    # When the provider asks for keys for the whole cluster
    response = api.post(BULK, {"cluster": provider.cluster.pk}, format="json")
    # Then every other node gets one (the provider's original node included), the keyed one not
    assert response.status_code == 201
    nodes = {row["node"] for row in response.json()["keys"]}
    assert imported[0].pk not in nodes and imported[1].pk in nodes and provider.node.pk in nodes
    assert len(nodes) == 50
    # And asking again finds nothing to do
    again = api.post(BULK, {"cluster": provider.cluster.pk}, format="json")
    assert again.status_code == 400 and "cluster" in again.json()["error"]["fields"]


def test_one_retired_node_refuses_the_whole_request(api, provider, imported):
    Node.objects.filter(pk=imported[7].pk).update(status=Node.Status.RETIRED)
    response = api.post(BULK, {"nodes": [node.pk for node in imported]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["nodes"] == ["Retired nodes take no agent keys: gpu-007."]
    assert not NodeAgentToken.objects.exists()


def test_another_organizations_node_reads_as_unknown_and_nothing_is_created(api, provider, other_provider):
    response = api.post(BULK, {"nodes": [provider.node.pk, other_provider.node.pk]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["nodes"] == [f"No such node in your organization: {other_provider.node.pk}."]
    assert not NodeAgentToken.objects.exists()
    # Nor can another organization's cluster be named
    assert api.post(BULK, {"cluster": other_provider.cluster.pk}, format="json").status_code == 400
    assert not NodeAgentToken.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {}, {"nodes": []}, {"nodes": ["x"]}, {"nodes": [1], "cluster": 1}, {"nodes": [1], "colour": "blue"},
        {"nodes": [2**63]}, {"cluster": 2**63}, {"nodes": [1] * 2001},
    ],
)
def test_bad_requests_are_400_in_the_one_error_shape(api, provider, body):
    response = api.post(BULK, body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "fields"}
    assert not NodeAgentToken.objects.exists()


def test_a_buyer_or_a_viewer_cannot_make_keys(client, provider):
    from tests.factories import member

    client.force_login(member(kind="buyer"))
    assert client.post(BULK, {"nodes": [provider.node.pk]}, content_type="application/json").status_code == 403
    assert not NodeAgentToken.objects.exists()


def test_the_csv_has_one_line_per_node():
    node = Node(pk=12, hostname="gpu-001")
    assert agent_keys_csv(keys=[(node, "cfa_abc")]) == "hostname,node_id,token\ngpu-001,12,cfa_abc\n"


# ------------------------------------------------------------------------------------------- pages


def rows_of(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="computeflow-agent-keys-')
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_the_cluster_page_downloads_keys_for_the_ticked_nodes(client, provider, imported):
    client.force_login(provider.user)
    page = client.get(f"/provider/clusters/{provider.cluster.pk}/").content.decode()
    assert 'form="agent-keys"' in page and f'value="{imported[3].pk}"' in page
    response = client.post("/provider/agent-keys/", {
        "cluster": provider.cluster.pk, "scope": "selected", "node": [imported[3].pk, imported[4].pk]})
    rows = rows_of(response)
    assert [(row["hostname"], int(row["node_id"])) for row in rows] == [("gpu-003", imported[3].pk), ("gpu-004", imported[4].pk)]
    assert all(node_agent_authenticate(key=row["token"]).node_id == int(row["node_id"]) for row in rows)


def test_the_site_page_downloads_keys_for_every_node_without_one(client, provider, imported):
    elsewhere = NodeFactory(cluster=ClusterFactory(site=provider.site, name="c2"), hostname="other-001")
    client.force_login(provider.user)
    rows = rows_of(client.post("/provider/agent-keys/", {"site": provider.site.pk, "scope": "missing"}))
    assert len(rows) == 52 and "other-001" in {row["hostname"] for row in rows}
    assert elsewhere.agent_tokens.count() == 1
    # A second click has nothing to do, and says so on the site page
    again = client.post("/provider/agent-keys/", {"site": provider.site.pk, "scope": "missing"}, follow=True)
    assert again.redirect_chain[-1][0] == f"/provider/sites/{provider.site.pk}/"
    assert "already has a working agent key" in again.content.decode()
    assert NodeAgentToken.objects.count() == 52


def test_an_id_beyond_bigint_on_the_page_is_an_unknown_node_not_a_crash(client, provider):
    client.force_login(provider.user)
    response = client.post("/provider/agent-keys/", {"cluster": provider.cluster.pk, "scope": "selected", "node": [str(2**64)]}, follow=True)
    assert response.status_code == 200
    assert f"No such node in your organization: {2**64}." in response.content.decode()
    assert client.post("/provider/agent-keys/", {"site": str(2**64), "scope": "missing"}).status_code == 404


def test_a_refused_page_request_creates_nothing_and_says_why(client, provider, imported, other_provider):
    client.force_login(provider.user)
    Node.objects.filter(pk=imported[0].pk).update(status=Node.Status.RETIRED)
    response = client.post("/provider/agent-keys/", {
        "cluster": provider.cluster.pk, "scope": "selected", "node": [imported[0].pk, imported[1].pk]}, follow=True)
    assert "Retired nodes take no agent keys: gpu-000." in response.content.decode()
    assert not NodeAgentToken.objects.exists()
    # Another organization's cluster is a 404
    assert client.post("/provider/agent-keys/", {"cluster": other_provider.cluster.pk, "scope": "missing"}).status_code == 404
