"""Inventory writes: sites, clusters, nodes (with devices), offers (money rule), maintenance windows."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from inventory import services
from inventory.allocations import device_allocations_create
from inventory.models import Device, DeviceAllocation, MaintenanceWindow, Node, Offer, Site, SiteLifecycleChange
from tests.factories import accelerator, province

pytestmark = pytest.mark.django_db


def test_a_new_site_takes_its_national_hub_from_the_province(provider):
    site = services.site_create(owner=provider.organization, name="Gui'an 2", province=province("CN-GZ"), city="Gui'an",
                                lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION, power_capacity_mw=Decimal("120"),
                                pue=Decimal("1.15"), certifications=["ISO 27001", " ", "ISO 27001", "Tier III"])
    assert site.province.hub.name == "Guizhou"
    assert site.certifications == ["ISO 27001", "Tier III"]
    assert site.lifecycle == "under_construction"


def test_a_buyer_organization_cannot_list_a_site(catalog):
    from tests.factories import OrganizationFactory

    buyer = OrganizationFactory(kind="buyer")
    with pytest.raises(ValidationError) as error:
        services.site_create(owner=buyer, name="Nope")
    assert "owner" in error.value.message_dict
    assert not Site.objects.filter(name="Nope").exists()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": ""}, "name"),
        ({"pue": Decimal("0.5")}, "pue"),
        ({"power_capacity_mw": Decimal("-1")}, "power_capacity_mw"),
        ({"power_capacity_mw": Decimal("50000")}, "power_capacity_mw"),
    ],
)
def test_bad_site_values_are_refused_by_field(provider, changes, field):
    with pytest.raises(ValidationError) as error:
        services.site_update(site=provider.site, **changes)
    assert field in error.value.message_dict


def test_a_duplicate_site_name_is_refused_on_the_name_field(provider):
    with pytest.raises(ValidationError) as error:
        services.site_create(owner=provider.organization, name=provider.site.name)
    assert error.value.message_dict["name"] == ["You already have a site with this name."]


def test_a_lifecycle_change_goes_through_the_audited_state_machine(provider):
    site = services.site_create(owner=provider.organization, name="New", lifecycle=Site.Lifecycle.PLANNED)
    site = services.site_update(site=site, lifecycle=Site.Lifecycle.UNDER_CONSTRUCTION, actor=provider.user)
    assert SiteLifecycleChange.objects.filter(site=site, from_lifecycle="planned", to_lifecycle="under_construction").exists()
    with pytest.raises(ValidationError):
        services.site_update(site=site, lifecycle=Site.Lifecycle.PLANNED)  # no way back
    services.site_retire(site=site, actor=provider.user)
    site.refresh_from_db()
    assert site.lifecycle == "retired"
    with pytest.raises(ValidationError):
        services.cluster_create(site=site, name="late", fabric="roce", fabric_bandwidth_gbps=200)


def test_a_node_is_listed_registered_with_one_device_per_card(provider):
    node = services.node_create(cluster=provider.cluster, hostname="GPU-X-01", accelerator_model=accelerator(),
                                card_count=8, cpu_cores=96, ram_gb=1024, disk_gb=8000)
    assert node.hostname == "gpu-x-01"
    assert node.status == Node.Status.REGISTERED
    assert list(Device.objects.filter(node=node).values_list("index", flat=True)) == list(range(8))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"hostname": "bad host!"}, "hostname"),
        ({"card_count": 0}, "card_count"),
        ({"card_count": 65}, "card_count"),
        ({"ram_gb": 0}, "ram_gb"),
    ],
)
def test_bad_node_values_are_refused_and_nothing_is_created(provider, overrides, field):
    fields = {"hostname": "ok-1", "accelerator_model": accelerator(), "card_count": 8, "cpu_cores": 64, "ram_gb": 512, "disk_gb": 100}
    fields.update(overrides)
    nodes_before = Node.objects.count()
    with pytest.raises(ValidationError) as error:
        services.node_create(cluster=provider.cluster, **fields)
    assert field in error.value.message_dict
    assert Node.objects.count() == nodes_before


def test_a_duplicate_hostname_in_the_cluster_is_refused(provider):
    with pytest.raises(ValidationError) as error:
        services.node_create(cluster=provider.cluster, hostname=provider.node.hostname, accelerator_model=accelerator(),
                             card_count=8, cpu_cores=1, ram_gb=1, disk_gb=1)
    assert "hostname" in error.value.message_dict


def test_a_nodes_model_and_card_count_are_fixed_once_listed(provider):
    with pytest.raises(ValidationError) as error:
        services.node_update(node=provider.node, card_count=16)
    assert "card_count" in error.value.message_dict


def test_retiring_a_node_is_an_audited_status_change_not_a_delete(provider):
    services.node_retire(node=provider.node, actor=provider.user)
    provider.node.refresh_from_db()
    assert provider.node.status == Node.Status.RETIRED
    assert provider.node.status_changes.filter(to_status="retired", actor=provider.user).exists()


# --- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, minor", [("25.00", 2500), ("25", 2500), ("0.01", 1), (" 99999.99 ", 9999999), ("1.50", 150)])
def test_a_typed_price_becomes_minor_units(typed, minor):
    assert services.price_major_to_minor(price=typed) == minor


@pytest.mark.parametrize(
    "typed, reason",
    [
        ("-5", "more than zero"),
        ("0", "more than zero"),
        ("25.001", "at most 2 decimals"),
        ("100000.01", "not a plausible price"),
        ("1e9", "not a plausible price"),
        ("NaN", "as a number"),
        ("twenty", "as a number"),
    ],
)
def test_absurd_or_malformed_prices_are_refused_with_a_reason(typed, reason):
    with pytest.raises(ValidationError) as error:
        services.price_major_to_minor(price=typed)
    assert reason in error.value.message_dict["price_per_card_hour"][0]


def test_price_per_ecu_hour_divides_by_the_cards_ecu_and_unrated_cards_have_none():
    # H100: 0.989 ECU per card; 25.00 per card-hour -> 25.278... -> 25.28 per ECU-hour (half up)
    assert services.price_per_ecu_hour_minor(price_per_card_hour_minor=2500, ecu_per_card=Decimal("0.9890")) == 2528
    assert services.price_per_ecu_hour_minor(price_per_card_hour_minor=2500, ecu_per_card=None) is None


def test_a_second_active_offer_for_the_same_model_in_a_cluster_is_refused(provider):
    with pytest.raises(ValidationError) as error:
        services.offer_create(cluster=provider.cluster, accelerator_model=provider.offer.accelerator_model, price_per_card_hour_minor=100)
    assert "accelerator_model" in error.value.message_dict


def test_an_offer_with_min_above_max_duration_is_refused(provider):
    with pytest.raises(ValidationError) as error:
        services.offer_update(offer=provider.offer, min_duration_hours=48, max_duration_hours=24)
    assert "min_duration_hours" in error.value.message_dict


def test_retiring_an_offer_keeps_it_and_frees_the_slot_for_a_new_price(provider):
    services.offer_retire(offer=provider.offer)
    provider.offer.refresh_from_db()
    assert provider.offer.is_active is False
    new = services.offer_create(cluster=provider.cluster, accelerator_model=provider.offer.accelerator_model,
                                price_per_card_hour_minor=1999, currency="USD")
    assert Offer.objects.filter(cluster=provider.cluster).count() == 2
    assert new.currency == "USD"


# --- maintenance windows -----------------------------------------------------------------------


def _window(provider, start_hours=24, hours=4, **kwargs):
    start = timezone.now() + timedelta(hours=start_hours)
    return services.maintenance_window_create(cluster=provider.cluster, start=start, end=start + timedelta(hours=hours), **kwargs)


def test_a_maintenance_window_blacks_out_every_device_of_the_cluster(provider):
    window = _window(provider, reason="firmware")
    allocated = DeviceAllocation.objects.filter(maintenance_window=window, is_active=True, purpose="maintenance")
    assert allocated.count() == provider.node.card_count


def test_an_overlapping_maintenance_window_is_refused_and_changes_nothing(provider):
    _window(provider, start_hours=24, hours=4)
    with pytest.raises(services.InventoryConflict) as error:
        _window(provider, start_hours=26, hours=4)
    assert "overlaps" in error.value.message
    assert MaintenanceWindow.objects.count() == 1


def test_a_window_over_a_booking_is_refused_and_leaves_no_window_behind(provider):
    start = timezone.now() + timedelta(days=1)
    device = provider.node.devices.first()
    device_allocations_create(device_ids=[device.pk], start=start, end=start + timedelta(hours=10), reservation_id=77)
    with pytest.raises(services.InventoryConflict) as error:
        services.maintenance_window_create(cluster=provider.cluster, start=start + timedelta(hours=2), end=start + timedelta(hours=3))
    assert error.value.message.startswith("1 confirmed reservation uses this cluster's cards during that window")
    assert not MaintenanceWindow.objects.exists()
    assert not DeviceAllocation.objects.filter(purpose="maintenance").exists()


@pytest.mark.parametrize("start_hours, hours, field", [(24, -1, "end"), (-10, 2, "end"), (1, 24 * 200, "end")])
def test_a_window_that_ends_before_it_starts_is_over_or_too_long_is_refused(provider, start_hours, hours, field):
    with pytest.raises(ValidationError) as error:
        _window(provider, start_hours=start_hours, hours=hours)
    assert field in error.value.message_dict


def test_cancelling_a_window_returns_its_devices_and_is_idempotent(provider):
    window = _window(provider)
    services.maintenance_window_cancel(window=window)
    services.maintenance_window_cancel(window=window)
    assert not DeviceAllocation.objects.filter(maintenance_window=window, is_active=True).exists()
    window.refresh_from_db()
    assert window.cancelled_at is not None
    _window(provider)  # the period is free again


def test_a_node_added_under_a_future_cluster_window_is_blacked_out_too(provider):
    window = _window(provider)
    node = services.node_create(cluster=provider.cluster, hostname="late-1", accelerator_model=accelerator(),
                                card_count=2, cpu_cores=8, ram_gb=64, disk_gb=100)
    assert DeviceAllocation.objects.filter(maintenance_window=window, device__node=node, is_active=True).count() == 2
