"""Authorization of every inventory endpoint and provider page: another organization's objects are
invisible (404, exactly like a missing id) and unchangeable; roles and organization kinds are enforced."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inventory import services
from inventory.models import Cluster, MaintenanceWindow, Node, Offer, Site
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def others(other_provider):
    """Bravo's inventory, with a maintenance window; and a snapshot to prove nothing changed."""
    start = timezone.now() + timedelta(days=3)
    window = services.maintenance_window_create(cluster=other_provider.cluster, start=start, end=start + timedelta(hours=2))
    other_provider.window = window
    return other_provider


def snapshot():
    return (
        list(Site.objects.order_by("pk").values_list("pk", "name", "lifecycle", "city")),
        list(Cluster.objects.order_by("pk").values_list("pk", "name", "fabric_bandwidth_gbps")),
        list(Node.objects.order_by("pk").values_list("pk", "hostname", "status", "cpu_cores")),
        list(Offer.objects.order_by("pk").values_list("pk", "price_per_card_hour_minor", "is_active")),
        list(MaintenanceWindow.objects.order_by("pk").values_list("pk", "cancelled_at")),
    )


def api_calls(o):
    """(method, url, body) of every object endpoint, aimed at organization `o`'s objects."""
    return [
        ("get", f"/api/sites/{o.site.pk}/", None),
        ("patch", f"/api/sites/{o.site.pk}/", {"city": "Hacked"}),
        ("post", f"/api/sites/{o.site.pk}/retire/", None),
        ("get", f"/api/clusters/{o.cluster.pk}/", None),
        ("patch", f"/api/clusters/{o.cluster.pk}/", {"fabric_bandwidth_gbps": 1}),
        ("post", f"/api/clusters/{o.cluster.pk}/retire/", None),
        ("get", f"/api/nodes/{o.node.pk}/", None),
        ("patch", f"/api/nodes/{o.node.pk}/", {"cpu_cores": 1}),
        ("post", f"/api/nodes/{o.node.pk}/retire/", None),
        ("get", f"/api/offers/{o.offer.pk}/", None),
        ("patch", f"/api/offers/{o.offer.pk}/", {"price_per_card_hour": "0.01"}),
        ("post", f"/api/offers/{o.offer.pk}/retire/", None),
        ("get", f"/api/maintenance-windows/{o.window.pk}/", None),
        ("post", f"/api/maintenance-windows/{o.window.pk}/cancel/", None),
    ]


def test_another_organizations_objects_answer_404_on_every_api_endpoint_and_stay_unchanged(provider, others, api):
    before = snapshot()
    for method, url, body in api_calls(others):
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["error"]["code"] == "not_found"
    assert snapshot() == before


def test_an_id_that_does_not_exist_answers_the_same_404(api, provider):
    assert api.get("/api/sites/999999/").json() == api.get("/api/sites/999998/").json()


def test_lists_show_only_the_callers_inventory(provider, others, api):
    for url, own in [("/api/sites/", provider.site), ("/api/clusters/", provider.cluster), ("/api/nodes/", provider.node),
                     ("/api/offers/", provider.offer)]:
        ids = [row["id"] for row in api.get(url).json()["results"]]
        assert ids == [own.pk], url
    assert api.get("/api/maintenance-windows/").json()["count"] == 0
    # and filtering by another organization's cluster is refused exactly like a cluster that does not exist
    theirs = api.get("/api/nodes/", {"cluster": others.cluster.pk})
    assert theirs.status_code == 400
    assert theirs.json() == api.get("/api/nodes/", {"cluster": 999999}).json()


@pytest.mark.parametrize(
    "url, body",
    [
        ("/api/clusters/", lambda o: {"site": o.site.pk, "name": "sneaky", "fabric": "roce", "fabric_bandwidth_gbps": 100}),
        ("/api/nodes/", lambda o: {"cluster": o.cluster.pk, "hostname": "sneaky", "accelerator_model": "nvidia-h100-sxm5-80gb",
                                   "card_count": 8, "cpu_cores": 1, "ram_gb": 1, "disk_gb": 1}),
        ("/api/offers/", lambda o: {"cluster": o.cluster.pk, "accelerator_model": "amd-instinct-mi300x-192gb", "price_per_card_hour": "1"}),
        ("/api/maintenance-windows/", lambda o: {"cluster": o.cluster.pk, "start": (timezone.now() + timedelta(days=9)).isoformat(),
                                                 "end": (timezone.now() + timedelta(days=10)).isoformat()}),
    ],
)
def test_creating_inside_another_organizations_site_or_cluster_is_refused(provider, others, api, url, body):
    before = snapshot()
    response = api.post(url, body(others), format="json")
    assert response.status_code == 400
    field = "site" if url == "/api/clusters/" else "cluster"
    assert "does not exist" in response.json()["error"]["fields"][field][0]
    assert snapshot() == before


def test_a_window_on_another_organizations_node_is_refused(provider, others, api):
    start = timezone.now() + timedelta(days=9)
    response = api.post("/api/maintenance-windows/", {"cluster": provider.cluster.pk, "node": others.node.pk,
                                                      "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}, format="json")
    assert response.status_code == 400 and "node" in response.json()["error"]["fields"]


def test_a_finance_viewer_reads_but_cannot_change_inventory(provider):
    viewer = member(organization=provider.organization, role="finance_viewer")
    api = provider.api(user=viewer)
    before = snapshot()
    assert api.get(f"/api/sites/{provider.site.pk}/").status_code == 200
    assert api.patch(f"/api/sites/{provider.site.pk}/", {"city": "x"}, format="json").status_code == 403
    assert api.post("/api/sites/", {"name": "x"}, format="json").status_code == 403
    assert api.post(f"/api/nodes/{provider.node.pk}/retire/").status_code == 403
    assert api.post("/api/nodes/import/", b"hostname\n", content_type="text/csv").status_code == 403
    assert snapshot() == before


def test_a_buyer_organization_cannot_list_inventory(catalog):
    buyer = member(kind="buyer")
    organization = buyer.memberships.get().organization
    from accounts.services import api_token_create

    _, key = api_token_create(user=buyer, organization=organization, name="t")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post("/api/sites/", {"name": "Not mine to list"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Only members of a provider organization with an editing role can change inventory."
    assert client.get("/api/sites/").json()["count"] == 0


@pytest.mark.parametrize("url", ["/api/sites/", "/api/clusters/", "/api/nodes/", "/api/offers/", "/api/maintenance-windows/", "/api/nodes/import/"])
def test_anonymous_callers_are_refused(catalog, url):
    client = APIClient()
    response = client.post(url, {}, format="json")
    assert response.status_code in (401, 403)
    assert client.get(url).status_code in (401, 403, 405)


def test_a_token_acts_only_for_its_own_organization(provider, others):
    # Given a user who belongs to both organizations, with a key of Alpha
    from accounts.services import membership_set

    membership_set(organization=others.organization, user=provider.user, role="owner")
    api = provider.api()
    # Then Bravo's objects are still invisible through Alpha's key
    assert api.get(f"/api/sites/{others.site.pk}/").status_code == 404


# --- pages -------------------------------------------------------------------------------------


def page_calls(o):
    return [
        ("get", f"/provider/sites/{o.site.pk}/"),
        ("get", f"/provider/sites/{o.site.pk}/edit/"),
        ("post", f"/provider/sites/{o.site.pk}/edit/"),
        ("post", f"/provider/sites/{o.site.pk}/retire/"),
        ("get", f"/provider/sites/{o.site.pk}/clusters/new/"),
        ("post", f"/provider/sites/{o.site.pk}/clusters/new/"),
        ("get", f"/provider/clusters/{o.cluster.pk}/"),
        ("get", f"/provider/clusters/{o.cluster.pk}/edit/"),
        ("post", f"/provider/clusters/{o.cluster.pk}/edit/"),
        ("get", f"/provider/clusters/{o.cluster.pk}/nodes/new/"),
        ("post", f"/provider/clusters/{o.cluster.pk}/nodes/new/"),
        ("get", f"/provider/clusters/{o.cluster.pk}/offers/new/"),
        ("post", f"/provider/clusters/{o.cluster.pk}/offers/new/"),
        ("get", f"/provider/clusters/{o.cluster.pk}/maintenance/"),
        ("post", f"/provider/clusters/{o.cluster.pk}/maintenance/"),
        ("get", f"/provider/nodes/{o.node.pk}/edit/"),
        ("post", f"/provider/nodes/{o.node.pk}/edit/"),
        ("post", f"/provider/nodes/{o.node.pk}/retire/"),
        ("get", f"/provider/offers/{o.offer.pk}/edit/"),
        ("post", f"/provider/offers/{o.offer.pk}/edit/"),
        ("post", f"/provider/offers/{o.offer.pk}/retire/"),
        ("post", f"/provider/maintenance/{o.window.pk}/cancel/"),
        ("get", f"/provider/nodes/import/template.csv?cluster={o.cluster.pk}"),
    ]


def test_another_organizations_objects_answer_404_on_every_page_and_stay_unchanged(provider, others, client):
    client.force_login(provider.user)
    before = snapshot()
    for method, url in page_calls(others):
        data = {"name": "x", "city": "Hacked", "fabric": "roce", "fabric_bandwidth_gbps": 1, "price_per_card_hour": "1",
                "cpu_cores": 1} if method == "post" else None
        response = getattr(client, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert snapshot() == before


def test_the_provider_home_lists_only_the_organizations_sites(provider, others, client):
    client.force_login(provider.user)
    body = client.get("/provider/").content.decode()
    assert provider.site.name in body and others.site.name not in body


def test_pages_need_a_signed_in_provider(provider, client):
    assert client.get("/provider/").status_code == 302  # to the sign-in page
    assert client.get("/provider/nodes/import/").status_code == 302
    buyer = member(kind="buyer")
    client.force_login(buyer)
    assert client.get("/provider/").status_code == 403
    assert client.get("/provider/nodes/import/").status_code == 403
    assert client.get(f"/provider/sites/{provider.site.pk}/").status_code == 403


def test_a_finance_viewer_sees_the_pages_but_cannot_change_anything(provider, client):
    viewer = member(organization=provider.organization, role="finance_viewer")
    client.force_login(viewer)
    before = snapshot()
    assert client.get(f"/provider/sites/{provider.site.pk}/").status_code == 200
    assert client.get(f"/provider/clusters/{provider.cluster.pk}/").status_code == 200
    assert client.get(f"/provider/sites/{provider.site.pk}/edit/").status_code == 403
    assert client.post(f"/provider/nodes/{provider.node.pk}/retire/").status_code == 403
    assert client.post("/provider/nodes/import/", {}).status_code == 403
    assert client.post(f"/provider/clusters/{provider.cluster.pk}/maintenance/", {"start": "2030-01-01T00:00", "end": "2030-01-02T00:00"}).status_code == 403
    assert snapshot() == before


# --- gaps: node page, agent keys, filters --------------------------------------------------------


def agent_key_snapshot():
    from inventory.models import NodeAgentToken

    return list(NodeAgentToken.objects.order_by("pk").values_list("pk", "node_id", "revoked_at"))


def test_another_organizations_node_page_and_agent_key_actions_answer_404(provider, others, client):
    from inventory.agent_services import node_agent_token_create

    # given Bravo's node with an agent key, and Alpha's provider signed in
    theirs, _ = node_agent_token_create(node=others.node)
    mine, _ = node_agent_token_create(node=provider.node)
    client.force_login(provider.user)
    before = (snapshot(), agent_key_snapshot())
    # when Alpha aims the node pages at Bravo's node (or at Bravo's key through Alpha's own node)
    calls = [
        ("get", f"/provider/nodes/{others.node.pk}/"),
        ("post", f"/provider/nodes/{others.node.pk}/agent-keys/"),
        ("post", f"/provider/nodes/{others.node.pk}/agent-keys/{theirs.pk}/revoke/"),
        ("post", f"/provider/nodes/{provider.node.pk}/agent-keys/{theirs.pk}/revoke/"),
        ("post", f"/provider/nodes/{others.node.pk}/agent-keys/{mine.pk}/revoke/"),
        ("post", f"/provider/nodes/{others.node.pk}/mismatch/resolve/"),
    ]
    # then each is a 404, and no key or node changed
    for method, url in calls:
        assert getattr(client, method)(url).status_code == 404, (method, url)
    assert (snapshot(), agent_key_snapshot()) == before


def test_another_organizations_agent_key_cannot_be_revoked_through_the_api_via_ones_own_node(provider, others, api):
    from inventory.agent_services import node_agent_token_create

    theirs, _ = node_agent_token_create(node=others.node)
    assert api.post(f"/api/agent/keys/{theirs.pk}/revoke/").status_code == 404
    assert api.get(f"/api/agent/nodes/{others.node.pk}/keys/").status_code == 404
    assert agent_key_snapshot() == [(theirs.pk, others.node.pk, None)]


@pytest.mark.parametrize(
    "url, param, target",
    [
        ("/api/clusters/", "site", lambda o: o.site.pk),
        ("/api/nodes/", "cluster", lambda o: o.cluster.pk),
        ("/api/offers/", "cluster", lambda o: o.cluster.pk),
        ("/api/maintenance-windows/", "cluster", lambda o: o.cluster.pk),
        ("/api/maintenance-windows/", "node", lambda o: o.node.pk),
    ],
)
def test_filtering_by_another_organizations_object_answers_like_a_missing_id(provider, others, api, url, param, target):
    # given Bravo's object's id, and an id that does not exist
    theirs = api.get(url, {param: target(others)})
    missing = api.get(url, {param: 999999})
    # then the two answers are the same: the filter does not reveal that Bravo's object exists
    assert theirs.status_code == missing.status_code == 400
    assert theirs.json() == missing.json()
    # and one's own object still filters
    own = {"site": provider.site.pk, "cluster": provider.cluster.pk, "node": provider.node.pk}[param]
    assert api.get(url, {param: own}).status_code == 200


def test_a_maintenance_page_post_naming_another_organizations_node_is_a_field_error(provider, others, client):
    client.force_login(provider.user)
    start = timezone.localtime(timezone.now() + timedelta(days=9))
    response = client.post(f"/provider/clusters/{provider.cluster.pk}/maintenance/", {
        "node": others.node.pk, "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 400 and "node" in response.context["form"].errors
    assert not MaintenanceWindow.objects.filter(cluster=provider.cluster).exists()


def test_a_colleagues_api_token_cannot_be_revoked_by_another_member(client):
    from accounts.models import ApiToken
    from accounts.services import api_token_create

    # given two members of one organization, one holding a key
    owner = member()
    organization = owner.memberships.get().organization
    colleague = member(organization=organization, role="admin")
    token, _ = api_token_create(user=owner, organization=organization, name="owner's laptop")
    # when the colleague tries to revoke it, then it does not exist for them
    client.force_login(colleague)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.django_db
def test_the_admin_shows_inventory_but_cannot_change_it(client):
    from inventory.models import Node
    from tests.factories import NodeFactory, UserFactory

    operator = UserFactory(is_staff=True, is_superuser=True)
    node = NodeFactory(card_count=8)
    client.force_login(operator)
    assert client.get(f"/admin/inventory/node/{node.pk}/change/").status_code == 200  # the view page
    response = client.post(f"/admin/inventory/node/{node.pk}/change/", {"card_count": 4, "hostname": "x"})
    assert response.status_code == 403
    assert Node.objects.get(pk=node.pk).card_count == 8
    assert client.get("/admin/inventory/deviceallocation/add/").status_code == 403
