"""What is on the market: the accelerator catalog, regions, sites, clusters, nodes, devices, offers,
maintenance windows, and the device calendar (allocations) that makes double booking impossible."""

from decimal import Decimal

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeOperators
from django.contrib.postgres.indexes import GistIndex
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, User


class Currency(models.TextChoices):
    CNY = "CNY", "CNY"
    USD = "USD", "USD"


# ---------------------------------------------------------------------------------------------
# Catalog and regions (loaded from inventory/data/*.csv by data migrations)
# ---------------------------------------------------------------------------------------------


class SoftwareStack(models.TextChoices):
    CUDA = "cuda", "CUDA"
    ROCM = "rocm", "ROCm"
    CANN = "cann", "CANN (Ascend)"
    NEUWARE = "neuware", "Cambricon Neuware"
    DTK = "dtk", "DTK (Hygon)"
    MACA = "maca", "MXMACA (MetaX)"
    MUSA = "musa", "MUSA (Moore Threads)"
    SUPA = "birensupa", "BIRENSUPA (Biren)"
    COREX = "corex", "Iluvatar CoreX"
    SYNAPSE = "synapseai", "Intel Gaudi (SynapseAI)"
    TOPS = "topsrider", "TopsRider (Enflame)"
    XPU = "kunlun", "Kunlunxin XRE"
    XLA = "xla", "XLA (TPU)"


class AcceleratorModel(models.Model):
    """One catalog entry. Figures are published dense peaks, not measurements (see `source`)."""

    vendor = models.CharField(max_length=64)
    name = models.CharField(max_length=128, unique=True)
    slug = models.SlugField(max_length=128, unique=True)
    architecture = models.CharField(max_length=200, blank=True)
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    memory_gb = models.PositiveIntegerField(null=True, blank=True)
    memory_type = models.CharField(max_length=32, blank=True)
    memory_bandwidth_tbps = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    bf16_dense_tflops = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    fp16_dense_tflops = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    fp8_dense_tflops = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    int8_dense_tops = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    fp32_tflops = models.DecimalField(max_digits=9, decimal_places=1, null=True, blank=True)
    tdp_w = models.PositiveIntegerField(null=True, blank=True)
    interconnect = models.CharField(max_length=200, blank=True)
    interconnect_gbps = models.PositiveIntegerField(null=True, blank=True)
    cards_per_server = models.PositiveSmallIntegerField(default=8)
    software_stack = models.CharField(max_length=300, blank=True)
    # The stack family a buyer filters on ("CUDA or CANN"), derived from software_stack at load.
    stack = models.CharField(max_length=16, choices=SoftwareStack.choices)
    pytorch_route = models.CharField(max_length=300, blank=True)
    source = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    # How sure the published figures are ("high", "low-medium", ...), from the catalog's notes.
    confidence = models.CharField(max_length=200, blank=True)
    # Effective compute units per card: dense BF16 PFLOP/s (FP16 where BF16 is not published).
    # NULL means "not rated" - no figure is published, and none is ever guessed.
    ecu_per_card = models.DecimalField(max_digits=9, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["vendor", "name"]

    def __str__(self):
        return f"{self.vendor} {self.name}"

    @property
    def is_rated(self) -> bool:
        return self.ecu_per_card is not None


class NationalHub(models.Model):
    """One of the 8 national computing hubs of the "East Data, West Computing" plan."""

    class Role(models.TextChoices):
        DEMAND = "demand", _("Demand hub (east)")
        RESOURCE = "resource", _("Resource hub (west)")

    name = models.CharField(max_length=100, unique=True)
    name_zh = models.CharField(max_length=50, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Province(models.Model):
    country = models.CharField(max_length=2, default="CN")
    code = models.CharField(max_length=8, unique=True)  # ISO 3166-2, e.g. CN-GZ
    name = models.CharField(max_length=100)
    name_zh = models.CharField(max_length=50, blank=True)
    macro_region = models.CharField(max_length=32)
    hub = models.ForeignKey(NationalHub, null=True, blank=True, on_delete=models.PROTECT, related_name="provinces")
    # The data-center cluster of the national plan in this province, if any.
    hub_cluster = models.CharField(max_length=120, blank=True)
    hub_cluster_zh = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


# ---------------------------------------------------------------------------------------------
# The physical network
# ---------------------------------------------------------------------------------------------


class Site(models.Model):
    """A data center."""

    class Lifecycle(models.TextChoices):
        PLANNED = "planned", _("Planned")
        UNDER_CONSTRUCTION = "under_construction", _("Under construction")
        ONLINE = "online", _("Online")  # the only state in which capacity is rentable
        RETIRED = "retired", _("Retired")

    owner = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, default="CN")
    province = models.ForeignKey(Province, null=True, blank=True, on_delete=models.PROTECT, related_name="sites")
    city = models.CharField(max_length=100, blank=True)
    # Changed only through inventory.services.site_set_lifecycle (audited).
    lifecycle = models.CharField(max_length=24, choices=Lifecycle.choices, default=Lifecycle.PLANNED)
    power_capacity_mw = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))]
    )
    pue = models.DecimalField(
        max_digits=4, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("1.00")), MaxValueValidator(Decimal("3.00"))],
    )
    certifications = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="site_name_unique_per_owner")]

    def __str__(self):
        return self.name


class Cluster(models.Model):
    """Nodes in one site that share a scale-out fabric; a multi-node booking stays inside one."""

    class Fabric(models.TextChoices):
        INFINIBAND = "infiniband", "InfiniBand"
        ROCE = "roce", "RoCE"
        ETHERNET = "ethernet", _("Ethernet")

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="clusters")
    name = models.CharField(max_length=100)
    fabric = models.CharField(max_length=16, choices=Fabric.choices)
    fabric_bandwidth_gbps = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(51200)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="cluster_name_unique_per_site")]

    def __str__(self):
        return f"{self.site.name} / {self.name}"


class Node(models.Model):
    """One server."""

    class Status(models.TextChoices):
        REGISTERED = "registered", _("Registered")  # listed, agent not yet heard from
        ONLINE = "online", _("Online")  # the only state in which its devices are rentable
        MAINTENANCE = "maintenance", _("Maintenance")
        UNHEALTHY = "unhealthy", _("Unhealthy")
        OFFLINE = "offline", _("Offline")
        RETIRED = "retired", _("Retired")

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="nodes")
    hostname = models.CharField(max_length=253)
    accelerator_model = models.ForeignKey(AcceleratorModel, on_delete=models.PROTECT, related_name="nodes")
    card_count = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(64)])
    cpu_model = models.CharField(max_length=120, blank=True)
    cpu_cores = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(4096)])
    ram_gb = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65536)])
    disk_gb = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(10_000_000)])
    # Changed only through inventory.services.node_set_status (audited).
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REGISTERED)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What the node agent last reported; compared with the listing above.
    reported_model_name = models.CharField(max_length=200, blank=True)
    reported_card_count = models.PositiveSmallIntegerField(null=True, blank=True)
    reported_memory_gb = models.PositiveIntegerField(null=True, blank=True)
    driver_version = models.CharField(max_length=100, blank=True)
    software_versions = models.JSONField(default=dict, blank=True)
    # Non-empty while the agent's report contradicts the listing; such a node is not rentable.
    mismatch_reason = models.TextField(blank=True)
    # 0-100 over the last RELIABILITY_WINDOW_DAYS (inventory.reliability): stored and refreshed, so
    # pages and search read a column instead of counting events.
    reliability_score = models.PositiveSmallIntegerField(default=100, db_default=100)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cluster_id", "hostname"]
        constraints = [models.UniqueConstraint(fields=["cluster", "hostname"], name="node_hostname_unique_per_cluster")]
        indexes = [models.Index(fields=["cluster", "accelerator_model", "status"])]

    def __str__(self):
        return self.hostname

    @property
    def is_flagged(self) -> bool:
        return bool(self.mismatch_reason)


class Device(models.Model):
    """One card of a node: the unit that is booked."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="devices")
    index = models.PositiveSmallIntegerField()
    serial = models.CharField(max_length=128, blank=True)  # UUID or serial reported by the agent

    class Meta:
        ordering = ["node_id", "index"]
        constraints = [models.UniqueConstraint(fields=["node", "index"], name="device_index_unique_per_node")]

    def __str__(self):
        return f"{self.node.hostname}#{self.index}"


class NodeAgentToken(models.Model):
    """The node agent's credential. Only a SHA-256 hash is stored; the key is shown once."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="agent_tokens")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)  # never modified
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)  # set once; a revoked key never works again

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"agent key {self.prefix}… for {self.node_id}"


# ---------------------------------------------------------------------------------------------
# The market
# ---------------------------------------------------------------------------------------------


class Offer(models.Model):
    """A provider's price for cards of one model in one cluster."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="offers")
    accelerator_model = models.ForeignKey(AcceleratorModel, on_delete=models.PROTECT, related_name="offers")
    # Price per card-hour in minor units (fen / cents) of `currency`. Reservations copy it at booking,
    # so changing it never changes a price already agreed.
    price_per_card_hour_minor = models.PositiveBigIntegerField(validators=[MinValueValidator(1)])
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.CNY)
    min_duration_hours = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    max_duration_hours = models.PositiveIntegerField(default=24 * 90, validators=[MinValueValidator(1)])
    # When the capacity may be rented; NULL = no limit. Maintenance blackouts are MaintenanceWindows.
    rentable_period = DateTimeRangeField(null=True, blank=True)
    # A withdrawn offer stays for history (reservations point at it) but is not on the market.
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "accelerator_model"], condition=Q(is_active=True), name="offer_one_active_per_cluster_model"
            ),
            models.CheckConstraint(condition=Q(min_duration_hours__lte=models.F("max_duration_hours")), name="offer_min_le_max_duration"),
            models.CheckConstraint(condition=Q(price_per_card_hour_minor__gt=0), name="offer_price_positive"),
        ]

    def __str__(self):
        return f"{self.accelerator_model.name} in {self.cluster}"


class MaintenanceWindow(models.Model):
    """A blackout: the cluster (or one node of it) is not rentable during `period` [start, end)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="maintenance_windows")
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.CASCADE, related_name="maintenance_windows")
    period = DateTimeRangeField()
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once when the provider calls the window off; its allocations are released with it.
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["period"]

    def __str__(self):
        return f"maintenance {self.period} ({self.reason or 'no reason given'})"


class DeviceAllocation(models.Model):
    """The device calendar: one row per device per booking or blackout, for [start, end).

    PostgreSQL refuses two active rows of the same device whose periods overlap (the exclusion
    constraint below), so no device is ever booked twice - whatever the application does.
    A row belongs either to a marketplace reservation (by id: inventory does not depend on the
    marketplace) or to a maintenance window.
    """

    class Purpose(models.TextChoices):
        RESERVATION = "reservation", _("Reservation")
        MAINTENANCE = "maintenance", _("Maintenance")

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="allocations")
    period = DateTimeRangeField()
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    # marketplace.Reservation id (no FK: the dependency points marketplace -> inventory).
    reservation_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    maintenance_window = models.ForeignKey(
        MaintenanceWindow, null=True, blank=True, on_delete=models.CASCADE, related_name="allocations"
    )
    # False once released (a cancelled booking or window); kept for history, ignored by the constraint.
    is_active = models.BooleanField(default=True)

    class ReleaseReason(models.TextChoices):
        CANCELLED = "cancelled", _("Cancelled before the start")
        RELEASED_EARLY = "released_early", _("Released early")
        FAILED = "failed", _("The reservation failed")
        REHOMED = "rehomed", _("Moved to other devices")
        NODE_FAILED = "node_failed", _("The node failed and nothing equivalent was free")
        MAINTENANCE_CANCELLED = "maintenance_cancelled", _("Maintenance window called off")

    # What was booked when the row was written. `period` above is the *effective* period (what the
    # exclusion constraint and availability read); a truncation shortens `period` and keeps this one,
    # so "which device served which interval, and what was it booked for" stays answerable.
    booked_period = DateTimeRangeField()
    # When and why the row was released or truncated (NULL / "" while it runs as booked). Written once:
    # the first release or truncation is the one that counts.
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=24, choices=ReleaseReason.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Copies of the device's node, and of that node's cluster and model (the offer key), written by
    # inventory.allocations at insert and never changed: a device never moves, and a node's cluster,
    # model and card count are fixed at listing (inventory.services.node_update refuses to change them).
    # They let availability count the allocations of many offers in one index scan
    # (allocation_offer_busy below) instead of probing the calendar device by device.
    # No FK constraint: `device` already guards integrity, and checking three more keys per
    # booked card would only slow bookings down.
    node = models.ForeignKey(Node, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    cluster = models.ForeignKey(Cluster, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+")
    accelerator_model = models.ForeignKey(
        AcceleratorModel, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )

    class Meta:
        indexes = [
            # Availability per offer: the active allocations of (cluster, model) overlapping a window,
            # answered from the index alone (device and node are included; `purpose` is not, as it
            # made every tuple 20% wider for the few maintenance rows - see the next index).
            GistIndex(
                fields=["cluster", "accelerator_model", "period"],
                include=["device", "node"],
                condition=Q(is_active=True),
                name="allocation_offer_busy",
            ),
            # The same for maintenance allocations only (a small index): which busy devices are in maintenance.
            GistIndex(
                fields=["cluster", "accelerator_model", "period"],
                include=["device", "node"],
                condition=Q(is_active=True, purpose="maintenance"),
                name="allocation_offer_maintenance",
            ),
        ]
        constraints = [
            ExclusionConstraint(
                name="device_allocation_no_overlap",
                expressions=[("device", RangeOperators.EQUAL), ("period", RangeOperators.OVERLAPS)],
                condition=Q(is_active=True),
            ),
            models.CheckConstraint(
                condition=(
                    Q(purpose="reservation", reservation_id__isnull=False, maintenance_window__isnull=True)
                    | Q(purpose="maintenance", reservation_id__isnull=True, maintenance_window__isnull=False)
                ),
                name="device_allocation_one_owner",
            ),
            models.CheckConstraint(condition=Q(period__isempty=False), name="device_allocation_period_not_empty"),
        ]

    def __str__(self):
        return f"{self.purpose} of device {self.device_id} for {self.period}"


# ---------------------------------------------------------------------------------------------
# Audit trails of the state machines (written only by inventory.services)
# ---------------------------------------------------------------------------------------------


class NodeStatusChange(models.Model):
    """Who moved a node from which status to which, and why. Append-only."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Node.Status.choices)
    to_status = models.CharField(max_length=16, choices=Node.Status.choices)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=300, blank=True)
    # Why the node failed, for a move out of online that is a failure (a ReliabilityEvent.Cause value;
    # "" otherwise). Failover copies it onto its reliability record and the buyers' downtime.
    # db_default: bulk writers (seed_demo's COPY) leave it out.
    cause = models.CharField(max_length=16, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"node {self.node_id}: {self.from_status} -> {self.to_status}"


class SiteLifecycleChange(models.Model):
    """Who moved a site along planned -> under_construction -> online -> retired, and why. Append-only."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="lifecycle_changes")
    from_lifecycle = models.CharField(max_length=24, choices=Site.Lifecycle.choices)
    to_lifecycle = models.CharField(max_length=24, choices=Site.Lifecycle.choices)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"site {self.site_id}: {self.from_lifecycle} -> {self.to_lifecycle}"


# ---------------------------------------------------------------------------------------------
# Reliability (inventory.reliability computes the scores)
# ---------------------------------------------------------------------------------------------


class ReliabilityEvent(models.Model):
    """Something that went wrong with a node, by kind and cause. Append-only; written only by
    inventory.reliability.node_reliability_record. The provider is copied from the node's site so the
    provider's record is one indexed read."""

    class Kind(models.TextChoices):
        HEARTBEAT_MISSED = "heartbeat_missed", _("Heartbeats missed")
        BOOT_FAILED = "boot_failed", _("Boot failed")
        FAILOVER = "failover", _("Failover (work moved off the node)")

    class Cause(models.TextChoices):
        HOST_FAULT = "host_fault", _("Host fault")
        NETWORK = "network", _("Network")
        MAINTENANCE = "maintenance", _("Declared maintenance")

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="reliability_events")
    provider = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    cause = models.CharField(max_length=16, choices=Cause.choices)
    at = models.DateTimeField()  # when it happened (for a failure: the node's last heartbeat)
    details = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["node", "at"]), models.Index(fields=["provider", "at"])]
        constraints = [
            # The same event recorded twice (a redelivered task) is one event.
            models.UniqueConstraint(fields=["node", "kind", "at"], name="reliability_event_once"),
        ]

    def __str__(self):
        return f"{self.kind} ({self.cause}) on node {self.node_id} at {self.at}"


class ProviderReliability(models.Model):
    """A provider's stored score (inventory.reliability.provider_score over its nodes), refreshed with
    each event and by beat, so search filters and shows it without counting anything."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="reliability")
    score = models.PositiveSmallIntegerField(default=100)
    refreshed_at = models.DateTimeField()

    def __str__(self):
        return f"reliability {self.score} of {self.organization_id}"
