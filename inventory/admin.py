from django.contrib import admin

from inventory.models import (
    AcceleratorModel,
    Cluster,
    Device,
    DeviceAllocation,
    MaintenanceWindow,
    NationalHub,
    Node,
    Offer,
    Province,
    Site,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only. Inventory changes go through inventory.services (the provider pages and the API),
    which keep the device calendar, the offers' availability and the audit trails consistent; a raw
    edit here (a node's card count, a window's period, an allocation) would silently break them.
    The catalog is loaded from inventory/data/accelerators.csv by a migration."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AcceleratorModel)
class AcceleratorModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "vendor", "memory_gb", "bf16_dense_tflops", "fp16_dense_tflops", "ecu_per_card", "stack", "confidence"]
    list_filter = ["vendor", "stack"]
    search_fields = ["name", "vendor", "architecture"]


@admin.register(NationalHub)
class NationalHubAdmin(ReadOnlyAdmin):
    list_display = ["name", "name_zh", "role"]


@admin.register(Province)
class ProvinceAdmin(ReadOnlyAdmin):
    list_display = ["name", "code", "macro_region", "hub", "hub_cluster"]
    list_filter = ["macro_region", "hub"]
    search_fields = ["name", "code"]


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "province", "city", "lifecycle"]
    list_filter = ["lifecycle", "province__hub"]
    search_fields = ["name", "owner__name", "city"]


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = ["name", "site", "fabric", "fabric_bandwidth_gbps"]
    search_fields = ["name", "site__name"]


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "cluster", "accelerator_model", "card_count", "status", "last_heartbeat_at", "mismatch_reason"]
    list_filter = ["status", "accelerator_model__vendor"]
    search_fields = ["hostname"]
    raw_id_fields = ["cluster"]


@admin.register(Device)
class DeviceAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "serial"]
    raw_id_fields = ["node"]


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "price_per_card_hour_minor", "currency", "is_active"]
    list_filter = ["currency", "is_active"]
    raw_id_fields = ["cluster"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ReadOnlyAdmin):
    list_display = ["cluster", "node", "period", "reason", "cancelled_at"]
    raw_id_fields = ["cluster", "node"]


@admin.register(DeviceAllocation)
class DeviceAllocationAdmin(ReadOnlyAdmin):
    list_display = ["device", "period", "purpose", "reservation_id", "is_active"]
    list_filter = ["purpose", "is_active"]
    raw_id_fields = ["device", "maintenance_window"]
