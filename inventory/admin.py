from django.contrib import admin

from accounts.selectors import user_is_operator
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
    ReliabilityEvent,
    Site,
)
from inventory.pricing import format_money, price_per_ecu_hour_minor


class ViewOnly:
    """No add, change or delete in the admin: writes go through the apps' services, which keep the
    calendars, availability and audit trails consistent. Also used by marketplace's admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ViewOnly, admin.ModelAdmin):
    """View only. Inventory changes go through inventory.services (the provider pages and the API),
    which keep the device calendar, the offers' availability and the audit trails consistent; a raw
    edit here (a node's card count, a window's period, an allocation) would silently break them.
    The catalog is loaded from inventory/data/accelerators.csv by a migration.

    Platform operators (the `operator` group) may look at all of it without model permissions being
    granted one by one: seeing the whole network is their job.
    """

    def has_module_permission(self, request):
        return user_is_operator(user=request.user) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return user_is_operator(user=request.user) or super().has_view_permission(request, obj)


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
    list_display = ["name", "owner", "country", "province", "city", "lifecycle"]
    list_filter = ["lifecycle", "country", "province__hub", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "owner__name", "city", "province__name", "province__code"]
    list_select_related = ["owner", "province"]


@admin.register(Cluster)
class ClusterAdmin(ReadOnlyAdmin):
    list_display = ["name", "site", "owner", "fabric", "fabric_bandwidth_gbps"]
    list_filter = ["fabric", "site__lifecycle", ("site__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "site__name", "site__owner__name"]
    list_select_related = ["site__owner"]

    @admin.display(description="owner", ordering="site__owner__name")
    def owner(self, cluster):
        return cluster.site.owner


class FlaggedFilter(admin.SimpleListFilter):
    """Nodes whose agent report contradicts the listing (not rentable until it matches again)."""

    title = "agent report"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "contradicts the listing"), ("no", "matches (or none yet)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(mismatch_reason="")
        if self.value() == "no":
            return queryset.filter(mismatch_reason="")
        return queryset


@admin.register(Node)
class NodeAdmin(ReadOnlyAdmin):
    list_display = ["hostname", "cluster", "accelerator_model", "card_count", "status", "last_heartbeat_at", "mismatch_reason"]
    list_filter = ["status", FlaggedFilter, "accelerator_model__vendor", ("cluster__site__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["hostname", "cluster__name", "cluster__site__name", "reported_model_name"]
    list_select_related = ["cluster", "accelerator_model"]
    raw_id_fields = ["cluster"]


@admin.register(Device)
class DeviceAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "node", "index", "serial"]
    search_fields = ["serial", "node__hostname"]
    list_select_related = ["node"]
    raw_id_fields = ["node"]


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "owner", "price_per_card_hour", "price_per_ecu_hour", "is_active"]
    list_filter = ["is_active", "currency", "accelerator_model__vendor", ("cluster__site__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["cluster__name", "cluster__site__name", "cluster__site__owner__name", "accelerator_model__name"]
    list_select_related = ["cluster__site__owner", "accelerator_model"]
    raw_id_fields = ["cluster"]

    @admin.display(description="owner", ordering="cluster__site__owner__name")
    def owner(self, offer):
        return offer.cluster.site.owner

    @admin.display(description="per card-hour", ordering="price_per_card_hour_minor")
    def price_per_card_hour(self, offer):
        return format_money(offer.price_per_card_hour_minor, offer.currency)

    @admin.display(description="per ECU-hour")
    def price_per_ecu_hour(self, offer):
        return format_money(price_per_ecu_hour_minor(
            price_per_card_hour_minor=offer.price_per_card_hour_minor, ecu_per_card=offer.accelerator_model.ecu_per_card
        ), offer.currency)


class CancelledFilter(admin.SimpleListFilter):
    title = "cancelled"
    parameter_name = "cancelled"

    def lookups(self, request, model_admin):
        return [("no", "planned"), ("yes", "cancelled")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(cancelled_at__isnull=self.value() == "no")
        return queryset


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ReadOnlyAdmin):
    list_display = ["cluster", "node", "period", "reason", "cancelled_at"]
    list_filter = [CancelledFilter, ("cluster__site__owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["cluster__name", "node__hostname", "reason"]
    list_select_related = ["cluster", "node"]
    raw_id_fields = ["cluster", "node"]


@admin.register(DeviceAllocation)
class DeviceAllocationAdmin(ReadOnlyAdmin):
    list_display = ["device", "period", "purpose", "reservation_id", "is_active"]
    list_filter = ["purpose", "is_active"]
    search_fields = ["reservation_id__exact", "device__serial", "device__node__hostname"]
    list_select_related = ["device__node"]
    raw_id_fields = ["device", "maintenance_window"]


@admin.register(ReliabilityEvent)
class ReliabilityEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "node", "provider", "kind", "cause", "details"]
    list_filter = ["kind", "cause"]
    search_fields = ["node__hostname", "provider__name"]
    list_select_related = ["node", "provider"]
