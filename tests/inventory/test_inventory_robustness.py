"""Bad input to the inventory API and pages gets a clear 4xx (or a field error) and changes nothing.

Each case here was a 500 found by fuzzing the API (schemathesis) or the pages.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.models import MaintenanceWindow, Node, Offer

pytestmark = pytest.mark.django_db

FAR = "9999-12-30T00:00:00Z"  # a date whose local time (UTC+8) no longer fits in a Python datetime


def error_of(response, status):
    assert response.status_code == status, response.content
    return response.json()["error"]


def test_a_nul_byte_in_the_accelerator_model_is_a_400_and_creates_no_node(api, provider):
    # given a node whose model name carries a NUL byte (PostgreSQL cannot compare it)
    body = {"cluster": provider.cluster.pk, "hostname": "n-2", "accelerator_model": "nvidia\x00h100",
            "card_count": 8, "cpu_cores": 8, "ram_gb": 64, "disk_gb": 100}
    # when it is posted
    error = error_of(api.post("/api/nodes/", body, format="json"), 400)
    # then the field is named and nothing was created
    assert "accelerator_model" in error["fields"]
    assert Node.objects.count() == 1


def test_a_nul_byte_in_an_agent_key_is_a_401():
    # given an agent key with a NUL byte
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Agent cfa_aaaaaaaaaa\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    # when / then it is refused like any wrong key
    assert error_of(client.post("/api/agent/heartbeat/", {}, format="json"), 401)["code"] == "authentication_failed"


def test_a_maintenance_window_at_the_end_of_time_is_refused_and_the_cluster_page_still_works(api, provider, client):
    # given a window in year 9999 (it was accepted, then every page that showed it crashed)
    body = {"cluster": provider.cluster.pk, "start": FAR, "end": "9999-12-31T23:59:59Z"}
    # when it is posted
    error = error_of(api.post("/api/maintenance-windows/", body, format="json"), 400)
    # then it is refused as too far ahead (the start beyond the 10-year horizon; the end, in the key
    # holder's UTC+8, beyond the last representable date), nothing is written, and the pages render
    assert "10 years" in error["fields"].get("start", [""])[0] or "out of range" in error["fields"]["end"][0]
    assert MaintenanceWindow.objects.count() == 0
    client.force_login(provider.user)
    assert client.get(f"/provider/clusters/{provider.cluster.pk}/").status_code == 200
    assert client.get(f"/provider/clusters/{provider.cluster.pk}/maintenance/").status_code == 200


def test_the_maintenance_page_shows_a_far_future_window_as_a_field_error(provider, client):
    # given the provider on the maintenance page
    client.force_login(provider.user)
    # when they type a date in year 9999
    response = client.post(f"/provider/clusters/{provider.cluster.pk}/maintenance/",
                           {"start": "9999-12-30T00:00", "end": "9999-12-31T00:00"})
    # then the form says why, next to the field, and nothing is written
    assert response.status_code == 400
    assert "10 years" in response.context["form"].errors["start"][0]
    assert MaintenanceWindow.objects.count() == 0


@pytest.mark.parametrize("field", ["rentable_from", "rentable_until"])
def test_an_offer_rentable_period_at_the_end_of_time_is_refused(api, provider, field):
    # given an offer
    before = Offer.objects.get().rentable_period
    # when its rentable period is moved to year 9999
    error = error_of(api.patch(f"/api/offers/{provider.offer.pk}/", {field: "9999-12-31T23:00:00Z"}, format="json"), 400)
    # then that bound is refused and the offer is unchanged
    assert field in error["fields"]
    assert Offer.objects.get().rentable_period == before


def test_an_offer_rentable_within_the_horizon_is_still_accepted(api, provider):
    # given / when a rentable period that ends nine years from now
    until = (timezone.now() + timedelta(days=9 * 365)).replace(microsecond=0)
    response = api.patch(f"/api/offers/{provider.offer.pk}/", {"rentable_until": until.isoformat()}, format="json")
    # then it is kept
    assert response.status_code == 200, response.content
    assert Offer.objects.get().rentable_period.upper == until


@pytest.mark.parametrize(
    "query",
    [{"page": "abc"}, {"page": "99999999999999999999"}, {"page": "-1"}, {"page": "\x00"}],
)
def test_garbage_in_the_cluster_page_query_string_is_never_a_500(provider, client, query):
    client.force_login(provider.user)
    assert client.get(f"/provider/clusters/{provider.cluster.pk}/", query).status_code == 200


@pytest.mark.parametrize("cluster", ["abc", "99999999999999999999", "\x00", "-1"])
def test_garbage_cluster_in_the_import_template_link_is_never_a_500(provider, client, cluster):
    client.force_login(provider.user)
    assert client.get("/provider/nodes/import/template.csv", {"cluster": cluster}).status_code in (200, 404)


@pytest.mark.django_db
def test_control_characters_in_site_and_cluster_names_are_refused_and_nothing_is_created(client):
    from inventory.models import Cluster, Site
    from tests.factories import SiteFactory, member

    user = member(kind="provider")
    client.force_login(user)
    response = client.post("/api/sites/", {"name": "Gui'an\x02 DC", "country": "CN", "lifecycle": "planned"}, content_type="application/json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    assert not Site.objects.exists()
    site = SiteFactory(owner=user.memberships.get().organization)
    response = client.post(
        "/api/clusters/", {"site": site.pk, "name": "ib\nA", "fabric": "infiniband", "fabric_bandwidth_gbps": 400},
        content_type="application/json",
    )
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]
    assert not Cluster.objects.exists()


@pytest.mark.django_db
def test_an_unknown_boolean_filter_value_is_refused_not_ignored(client):
    from tests.factories import member

    client.force_login(member(kind="provider"))
    response = client.get("/api/offers/?is_active=maybe")
    assert response.status_code == 400
    assert "is_active" in response.json()["error"]["fields"]
    assert client.get("/api/offers/?is_active=true").status_code == 200
    assert client.get("/api/maintenance-windows/?active=perhaps").status_code == 400


@pytest.mark.django_db
def test_odd_digits_in_the_template_cluster_id_are_a_404_not_a_crash(client):
    from tests.factories import member

    client.force_login(member(kind="provider"))
    assert client.get("/provider/nodes/import/template.csv?cluster=²").status_code == 404
    assert client.get("/provider/nodes/import/template.csv?cluster=abc").status_code == 404
    assert client.get("/provider/nodes/import/template.csv").status_code == 200


@pytest.mark.django_db
def test_a_control_character_in_an_imported_cpu_model_rejects_the_row(client):
    from inventory import services
    from inventory.importers import NodeImportInvalid
    from tests.factories import ClusterFactory, member

    user = member(kind="provider")
    organization = user.memberships.get().organization
    cluster = ClusterFactory(site__owner=organization)
    data = (
        "hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb,cpu_model\n"
        f'gpu-1,{cluster.pk},H100 SXM5 80GB,8,128,2048,15000,"Xeon\x07 8480"\n'
    ).encode()
    with pytest.raises(NodeImportInvalid) as error:
        services.nodes_import_csv(organization=organization, data=data, actor=user)
    assert any(e.row == 2 and e.column == "cpu_model" for e in error.value.row_errors)
    assert not Node.objects.exists()


@pytest.mark.django_db
def test_the_api_gives_no_agent_key_to_a_retired_node(client):
    from inventory.models import NodeAgentToken
    from tests.factories import ClusterFactory, NodeFactory, member

    user = member(kind="provider")
    node = NodeFactory(cluster=ClusterFactory(site__owner=user.memberships.get().organization), status=Node.Status.RETIRED)
    client.force_login(user)
    response = client.post(f"/api/agent/nodes/{node.pk}/keys/")
    assert response.status_code == 400
    assert not NodeAgentToken.objects.filter(node=node).exists()
