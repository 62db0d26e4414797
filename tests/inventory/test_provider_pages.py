"""Provider pages: forms show errors next to the field, the utilization panel counts listed vs booked
cards per day with set-based SQL, the maintenance editor plans and cancels windows."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from inventory import selectors
from inventory.allocations import device_allocations_create
from inventory.models import Cluster, MaintenanceWindow, Node, Offer, Site
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, SiteFactory, accelerator

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, provider):
    client.force_login(provider.user)
    return client


def field_error(response, field):
    match = re.search(rf'<p class="field-error" data-field="{field}">([^<]*)</p>', response.content.decode())
    return match.group(1) if match else None


def test_the_nav_links_of_the_provider_area_exist(signed_in):
    assert signed_in.get("/provider/").status_code == 200
    assert signed_in.get("/provider/nodes/import/").status_code == 200


def test_creating_a_site_then_a_cluster_then_a_node_by_form(signed_in, provider):
    response = signed_in.post("/provider/sites/new/", {"name": "Zhongwei 3", "country": "CN", "lifecycle": "planned", "city": "Zhongwei"})
    site = Site.objects.get(name="Zhongwei 3")
    assert response.status_code == 302 and response["Location"] == f"/provider/sites/{site.pk}/"
    response = signed_in.post(f"/provider/sites/{site.pk}/clusters/new/", {"name": "roce-1", "fabric": "roce", "fabric_bandwidth_gbps": 200})
    cluster = Cluster.objects.get(site=site)
    response = signed_in.post(f"/provider/clusters/{cluster.pk}/nodes/new/", {
        "hostname": "zw-001", "accelerator_model": provider.node.accelerator_model_id, "card_count": 8,
        "cpu_cores": 64, "ram_gb": 1024, "disk_gb": 4000})
    assert response.status_code == 302
    page = signed_in.get(f"/provider/sites/{site.pk}/").content.decode()
    assert "not rentable" in page.lower() or "nothing in it can be rented" in page  # a planned site is pipeline


@pytest.mark.parametrize(
    "data, field, reason",
    [
        ({"pue": "0.7"}, "pue", "Ensure this value is greater than or equal to 1."),
        ({"power_capacity_mw": "-2"}, "power_capacity_mw", "Ensure this value is greater than or equal to 0."),
        ({"name": ""}, "name", "This field is required."),
        ({"lifecycle": "retired"}, "lifecycle", "Select a valid choice. retired is not one of the available choices."),
    ],
)
def test_site_form_errors_are_shown_next_to_the_field(signed_in, provider, data, field, reason):
    response = signed_in.post("/provider/sites/new/", {"name": "S", "country": "CN", "lifecycle": "planned", **data})
    assert response.status_code == 200
    assert field_error(response, field) == reason
    assert Site.objects.count() == 1


def test_a_duplicate_site_name_is_shown_next_to_the_name(signed_in, provider):
    response = signed_in.post("/provider/sites/new/", {"name": provider.site.name, "country": "CN", "lifecycle": "planned"})
    assert field_error(response, "name") == "You already have a site with this name."


@pytest.mark.parametrize(
    "price, reason",
    [
        ("-3", "The price must be more than zero."),
        ("2000000", "2000000 per card-hour is not a plausible price (the limit is 100,000)."),
        ("9.999", "Use at most 2 decimals (the smallest unit is 0.01)."),
    ],
)
def test_offer_form_price_errors_are_shown_next_to_the_price(signed_in, provider, price, reason):
    response = signed_in.post(f"/provider/clusters/{provider.cluster.pk}/offers/new/", {
        "accelerator_model": 1, "price_per_card_hour": price, "currency": "CNY", "min_duration_hours": 1, "max_duration_hours": 10})
    assert field_error(response, "price_per_card_hour") == reason
    assert Offer.objects.count() == 1


def test_the_cluster_page_shows_price_per_card_hour_and_per_ecu_hour(signed_in, provider):
    body = signed_in.get(f"/provider/clusters/{provider.cluster.pk}/").content.decode()
    assert "CNY 25.00" in body and "CNY 25.28" in body  # 25.00 / 0.989 ECU, half up


def test_the_maintenance_editor_plans_refuses_overlaps_and_cancels(signed_in, provider):
    url = f"/provider/clusters/{provider.cluster.pk}/maintenance/"
    start = timezone.localtime() + timedelta(days=2)
    fmt = "%Y-%m-%dT%H:%M"
    data = {"start": start.strftime(fmt), "end": (start + timedelta(hours=4)).strftime(fmt), "reason": "cooling"}
    assert signed_in.post(url, data).status_code == 302
    window = MaintenanceWindow.objects.get()
    assert window.allocations.filter(is_active=True).count() == provider.node.card_count
    overlapping = signed_in.post(url, {**data, "start": (start + timedelta(hours=1)).strftime(fmt)})
    assert overlapping.status_code == 409
    assert field_error(overlapping, "start") == "This period overlaps an existing maintenance window."
    backwards = signed_in.post(url, {**data, "end": (start - timedelta(hours=1)).strftime(fmt)})
    assert backwards.status_code == 400 and field_error(backwards, "end") == "The window must end after it starts."
    assert MaintenanceWindow.objects.count() == 1
    assert signed_in.post(f"/provider/maintenance/{window.pk}/cancel/").status_code == 302
    assert not window.allocations.filter(is_active=True).exists()


def test_editing_a_node_changes_its_status_through_the_state_machine(signed_in, provider):
    response = signed_in.post(f"/provider/nodes/{provider.node.pk}/edit/", {
        "hostname": provider.node.hostname, "cpu_cores": 96, "ram_gb": 1024, "disk_gb": 100, "status": "maintenance"})
    assert response.status_code == 302
    provider.node.refresh_from_db()
    assert provider.node.status == "maintenance" and provider.node.cpu_cores == 96
    assert provider.node.status_changes.filter(to_status="maintenance").exists()


# --- utilization ---------------------------------------------------------------------------------


def test_utilization_counts_listed_and_booked_cards_per_day(provider):
    # Given an online site with one listed 4-card node, one 8-card node of a model with no offer,
    # and a registered node (not rentable yet)
    NodeFactory(cluster=provider.cluster, accelerator_model=accelerator("amd-instinct-mi300x-192gb"))
    NodeFactory(cluster=provider.cluster, status=Node.Status.REGISTERED)
    today = timezone.localdate()
    midnight = timezone.make_aware(datetime.combine(today, time.min))
    devices = list(provider.node.devices.values_list("pk", flat=True))
    # 2 cards booked over days 2-3, 1 card in maintenance on day 5
    device_allocations_create(device_ids=devices[:2], start=midnight + timedelta(days=2, hours=6), end=midnight + timedelta(days=3, hours=1), reservation_id=1)
    device_allocations_create(device_ids=devices[2:3], start=midnight + timedelta(days=5), end=midnight + timedelta(days=5, hours=2), reservation_id=2)
    # When the panel is computed
    days = selectors.site_utilization(site=provider.site, days=14)
    # Then
    assert len(days) == 14 and days[0]["day"] == today
    assert {d["listed"] for d in days} == {4}
    assert [d["booked"] for d in days[:7]] == [0, 0, 2, 2, 0, 1, 0]
    assert days[2]["share"] == 50


def test_utilization_lists_nothing_for_a_pipeline_site(catalog):
    site = SiteFactory(lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION)
    cluster = ClusterFactory(site=site)
    node = NodeFactory(cluster=cluster)
    OfferFactory(cluster=cluster, accelerator_model=node.accelerator_model)
    assert {d["listed"] for d in selectors.site_utilization(site=site)} == {0}


def test_utilization_is_one_query_whatever_the_size(provider, django_assert_num_queries):
    for _ in range(20):
        NodeFactory(cluster=provider.cluster, accelerator_model=provider.node.accelerator_model)
    with django_assert_num_queries(1):
        days = selectors.site_utilization(site=provider.site)
    assert days[0]["listed"] == 4 + 20 * 8


def test_the_site_page_shows_cards_by_model_and_status_and_the_panel(signed_in, provider):
    body = signed_in.get(f"/provider/sites/{provider.site.pk}/").content.decode()
    assert 'data-testid="cards-by-model"' in body and provider.node.accelerator_model.name in body
    assert body.count('class="pv-util-day"') == 14


@pytest.mark.django_db
def test_utilization_days_start_at_local_midnight_across_a_dst_change():
    # Given a Berlin viewer and 2 cards booked 00:30-01:00 local on the Monday after the spring DST change
    import zoneinfo
    from datetime import datetime

    from django.utils import timezone

    from inventory.allocations import device_allocations_create
    from inventory.selectors import site_utilization
    from tests.factories import NodeFactory

    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    node = NodeFactory(card_count=2)
    device_ids = list(node.devices.values_list("id", flat=True))
    device_allocations_create(
        device_ids=device_ids, reservation_id=1,
        start=datetime(2027, 3, 29, 0, 30, tzinfo=berlin), end=datetime(2027, 3, 29, 1, 0, tzinfo=berlin),
    )
    # When the panel is computed from Saturday (the clocks go forward on Sunday 28 March)
    with timezone.override(berlin):
        days = site_utilization(site=node.cluster.site, days=3, start=datetime(2027, 3, 27, 12, 0, tzinfo=berlin))
    # Then the booking falls on Monday, not on Sunday
    booked = {str(day["day"]): day["booked"] for day in days}
    assert booked == {"2027-03-27": 0, "2027-03-28": 0, "2027-03-29": 2}
