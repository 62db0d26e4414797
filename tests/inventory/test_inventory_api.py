"""REST API of the provider inventory: create, read, update, retire; bad input answers 4xx in the one
error shape and changes nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inventory.allocations import device_allocations_create
from inventory.models import Cluster, DeviceAllocation, MaintenanceWindow, Node, Offer, Site
from tests.factories import NodeFactory, accelerator

pytestmark = pytest.mark.django_db


def error_of(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def test_a_provider_lists_a_site_cluster_node_and_offer_through_the_api(api, provider):
    site = api.post("/api/sites/", {"name": "Ulanqab 1", "province": "CN-NM", "city": "Ulanqab", "lifecycle": "online",
                                    "power_capacity_mw": "150.00", "pue": "1.20", "certifications": ["Tier III"]}, format="json")
    assert site.status_code == 201, site.content
    assert site.json()["national_hub"] == "Inner Mongolia" and site.json()["is_rentable"] is True
    cluster = api.post("/api/clusters/", {"site": site.json()["id"], "name": "ib-a", "fabric": "infiniband",
                                          "fabric_bandwidth_gbps": 400}, format="json")
    assert cluster.status_code == 201, cluster.content
    node = api.post("/api/nodes/", {"cluster": cluster.json()["id"], "hostname": "ulq-001", "accelerator_model": "Ascend 910B (generic / Atlas 800T A2)",
                                    "card_count": 8, "cpu_cores": 192, "ram_gb": 1536, "disk_gb": 7680}, format="json")
    assert node.status_code == 201, node.content
    assert node.json()["status"] == "registered"
    assert Node.objects.get(pk=node.json()["id"]).devices.count() == 8
    offer = api.post("/api/offers/", {"cluster": cluster.json()["id"], "accelerator_model": node.json()["accelerator_model"],
                                      "price_per_card_hour": "12.80", "currency": "CNY", "min_duration_hours": 4}, format="json")
    assert offer.status_code == 201, offer.content
    body = offer.json()
    assert body["price_per_card_hour_minor"] == 1280 and body["price_per_card_hour"] == "12.80"
    assert body["price_per_ecu_hour"] == "40.00"  # 12.80 / 0.32 ECU


def test_lists_are_paginated_and_filterable(api, provider):
    response = api.get("/api/nodes/", {"status": "online", "page_size": 1})
    assert response.status_code == 200
    assert response.json()["count"] == 1 and response.json()["results"][0]["hostname"] == provider.node.hostname
    assert api.get("/api/nodes/", {"status": "retired"}).json()["count"] == 0
    assert error_of(api.get("/api/nodes/", {"page_size": 5000}), 400)["fields"] == {"page_size": ["Must be between 1 and 200."]}


def test_an_offer_of_an_unrated_card_shows_no_ecu_price(api, provider):
    NodeFactory(cluster=provider.cluster, accelerator_model=accelerator("huawei-ascend-910b1"), card_count=8)
    response = api.post("/api/offers/", {"cluster": provider.cluster.pk, "accelerator_model": "Ascend 910B1", "price_per_card_hour": "10"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["price_per_ecu_hour"] is None


def test_updates_change_the_fields_and_lifecycle_moves_through_the_state_machine(api, provider):
    site = Site.objects.create(owner=provider.organization, name="Pipeline", lifecycle="planned")
    assert api.patch(f"/api/sites/{site.pk}/", {"city": "Zhongwei"}, format="json").json()["city"] == "Zhongwei"
    moved = api.patch(f"/api/sites/{site.pk}/", {"lifecycle": "under_construction"}, format="json")
    assert moved.json()["lifecycle"] == "under_construction"
    error = error_of(api.patch(f"/api/sites/{site.pk}/", {"lifecycle": "planned"}, format="json"), 400)
    assert error["fields"] == {"lifecycle": ["A site cannot go from under_construction to planned."]}
    offer = api.patch(f"/api/offers/{provider.offer.pk}/", {"price_per_card_hour": "30.5"}, format="json")
    assert offer.json()["price_per_card_hour_minor"] == 3050


def test_retire_endpoints_retire_and_never_delete(api, provider):
    assert api.post(f"/api/offers/{provider.offer.pk}/retire/").json()["is_active"] is False
    assert api.post(f"/api/nodes/{provider.node.pk}/retire/").json()["status"] == "retired"
    assert api.post(f"/api/sites/{provider.site.pk}/retire/").json()["lifecycle"] == "retired"
    assert Offer.objects.filter(pk=provider.offer.pk).exists() and Node.objects.filter(pk=provider.node.pk).exists()
    assert api.delete(f"/api/sites/{provider.site.pk}/").status_code == 405


def test_retiring_a_cluster_retires_its_nodes_and_withdraws_its_offers(api, provider):
    assert api.post(f"/api/clusters/{provider.cluster.pk}/retire/").status_code == 200
    provider.node.refresh_from_db()
    provider.offer.refresh_from_db()
    assert provider.node.status == "retired" and provider.offer.is_active is False


@pytest.mark.parametrize(
    "payload, field, reason",
    [
        ({"price_per_card_hour": "-5"}, "price_per_card_hour", "The price must be more than zero."),
        ({"price_per_card_hour": "250000"}, "price_per_card_hour", "250000 per card-hour is not a plausible price (the limit is 100,000)."),
        ({"price_per_card_hour": "1.999"}, "price_per_card_hour", "Use at most 2 decimals (the smallest unit is 0.01)."),
        ({"accelerator_model": "quantum-gpu-9000"}, "accelerator_model", "Unknown accelerator model 'quantum-gpu-9000': use a catalog slug (e.g. nvidia-h100-sxm5-80gb) or name."),
        ({"currency": "EUR"}, "currency", '"EUR" is not a valid choice.'),
        ({"min_duration_hours": 0}, "min_duration_hours", "Ensure this value is greater than or equal to 1."),
        ({"min_duration_hours": 100, "max_duration_hours": 10}, "min_duration_hours", "The minimum duration is longer than the maximum."),
    ],
)
def test_bad_offer_input_answers_400_with_field_and_reason_and_creates_nothing(api, provider, payload, field, reason):
    base = {"cluster": provider.cluster.pk, "accelerator_model": "amd-instinct-mi300x-192gb", "price_per_card_hour": "20"}
    before = Offer.objects.count()
    error = error_of(api.post("/api/offers/", {**base, **payload}, format="json"), 400)
    assert error["fields"][field] == [reason]
    assert Offer.objects.count() == before


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"card_count": 0}, "card_count"),
        ({"card_count": 1000}, "card_count"),
        ({"hostname": "has space"}, "hostname"),
        ({"accelerator_model": "H900"}, "accelerator_model"),
        ({"ram_gb": "lots"}, "ram_gb"),
        ({"status": "online"}, "status"),
    ],
)
def test_bad_node_input_answers_400_and_creates_nothing(api, provider, payload, field):
    base = {"cluster": provider.cluster.pk, "hostname": "n-new", "accelerator_model": "nvidia-h100-sxm5-80gb",
            "card_count": 8, "cpu_cores": 64, "ram_gb": 512, "disk_gb": 1000}
    error = error_of(api.post("/api/nodes/", {**base, **payload}, format="json"), 400)
    assert field in error["fields"]
    assert Node.objects.count() == 1


def test_a_node_cannot_change_its_card_count(api, provider):
    error = error_of(api.patch(f"/api/nodes/{provider.node.pk}/", {"card_count": 16}, format="json"), 400)
    assert "card_count" in error["fields"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": ""}, "name"),
        ({"pue": "0.4"}, "pue"),
        ({"power_capacity_mw": "-3"}, "power_capacity_mw"),
        ({"province": "XX-99"}, "province"),
        ({"lifecycle": "retired"}, "lifecycle"),
    ],
)
def test_bad_site_input_answers_400(api, provider, payload, field):
    error = error_of(api.post("/api/sites/", {"name": "S", **payload}, format="json"), 400)
    assert field in error["fields"]
    assert Site.objects.count() == 1


def test_a_duplicate_cluster_name_in_a_site_answers_400_on_the_name(api, provider):
    error = error_of(api.post("/api/clusters/", {"site": provider.site.pk, "name": "c1", "fabric": "roce", "fabric_bandwidth_gbps": 100}, format="json"), 400)
    assert error["fields"] == {"name": ["This site already has a cluster with this name."]}
    assert Cluster.objects.count() == 1


def test_maintenance_windows_are_created_listed_and_cancelled(api, provider):
    start = timezone.now() + timedelta(days=2)
    created = api.post("/api/maintenance-windows/", {"cluster": provider.cluster.pk, "start": start.isoformat(),
                                                     "end": (start + timedelta(hours=6)).isoformat(), "reason": "PDU swap"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["device_count"] == provider.node.card_count
    window_id = created.json()["id"]
    assert api.get("/api/maintenance-windows/", {"active": "true"}).json()["count"] == 1
    cancelled = api.post(f"/api/maintenance-windows/{window_id}/cancel/")
    assert cancelled.json()["cancelled_at"] is not None and cancelled.json()["device_count"] == 0


def test_an_overlapping_maintenance_window_answers_409_and_changes_nothing(api, provider):
    start = timezone.now() + timedelta(days=2)
    device_allocations_create(device_ids=[provider.node.devices.first().pk], start=start, end=start + timedelta(hours=3), reservation_id=5)
    response = api.post("/api/maintenance-windows/", {"cluster": provider.cluster.pk, "start": (start + timedelta(hours=1)).isoformat(),
                                                      "end": (start + timedelta(hours=8)).isoformat()}, format="json")
    error = error_of(response, 409)
    assert error["code"] == "capacity_booked"
    assert error["message"].startswith("1 confirmed reservation uses this cluster's cards during that window")
    assert error["fields"] == {"start": [error["message"]]}
    assert not MaintenanceWindow.objects.exists() and not DeviceAllocation.objects.filter(purpose="maintenance").exists()


def test_a_maintenance_window_ending_before_it_starts_answers_400(api, provider):
    start = timezone.now() + timedelta(days=2)
    error = error_of(api.post("/api/maintenance-windows/", {"cluster": provider.cluster.pk, "start": start.isoformat(),
                                                            "end": (start - timedelta(hours=1)).isoformat()}, format="json"), 400)
    assert error["fields"] == {"end": ["The window must end after it starts."]}


@pytest.mark.parametrize("header", ["Token cf_wrongwrongwrongwrongwrong", "Token", "Bearer abc"])
def test_a_wrong_token_answers_401_and_changes_nothing(catalog, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post("/api/sites/", {"name": "Intruder"}, format="json")
    assert response.status_code in (401, 403)
    assert "error" in response.json()
    assert not Site.objects.filter(name="Intruder").exists()


def test_the_openapi_schema_documents_the_inventory_endpoints(client, provider):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/api/sites/", "/api/sites/{id}/retire/", "/api/clusters/{id}/", "/api/nodes/", "/api/nodes/import/",
                 "/api/offers/{id}/", "/api/maintenance-windows/{id}/cancel/"]:
        assert path in paths, path
    assert "ApiToken" in response.json()["components"]["securitySchemes"]


def test_the_inventory_schema_generates_without_warnings(capsys):
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.emit_summary()
    output = capsys.readouterr().err
    ours = [
        line for line in output.splitlines()
        if "inventory/api.py" in line or "inventory/schema.py" in line or 'fields named "status"' in line
    ]
    assert ours == []


def test_the_interactive_documentation_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content.lower()
