"""The buyer's side of the market: reservations and their audit trail.

A reservation books `card_count` devices of one offer (one accelerator model in one cluster) for the
half-open period [start, end). The devices themselves are inventory.DeviceAllocation rows carrying
`reservation_id`; PostgreSQL's exclusion constraint on those rows is what makes a double booking
impossible. Every status change goes through marketplace.services.reservation_set_status.
"""

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import ArrayField, DateTimeRangeField, RangeBoundary, RangeOperators
from django.db import models
from django.db.models import F, Func, Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization, User
from inventory.models import AcceleratorModel, Cluster, Currency, Node, Offer, ReliabilityEvent, SoftwareStack


class LaunchTemplate(models.Model):
    """A workload the buyer picks ("PyTorch 2.x", "vLLM", "bare SSH"), whatever the hardware.

    The template maps to one container image per software stack (LaunchTemplateImage); a stack with no
    image cannot run it, so quotes exclude such offers and booking refuses them. Loaded by a data
    migration from marketplace.launch.LAUNCH_TEMPLATES; operators edit them in the admin.
    """

    class WorkloadKind(models.TextChoices):
        TRAINING = "training", _("Training and notebooks")
        INFERENCE = "inference", _("Inference serving")
        SHELL = "shell", _("Shell only")

    slug = models.SlugField(max_length=64, unique=True)  # what the API and the forms name; never rename a used one
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    workload_kind = models.CharField(max_length=16, choices=WorkloadKind.choices)
    # Inactive templates are offered to nobody; reservations already booked with one keep it.
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def image_for(self, stack: str) -> "LaunchTemplateImage | None":
        """The image for `stack`, read from the prefetched images (no query per row when prefetched)."""
        return next((image for image in self.images.all() if image.stack == stack), None)


class LaunchTemplateImage(models.Model):
    """The container image that runs a template on one software stack."""

    template = models.ForeignKey(LaunchTemplate, on_delete=models.CASCADE, related_name="images")
    stack = models.CharField(max_length=16, choices=SoftwareStack.choices)
    # A public registry reference (registry/repository:tag). The node agent pulls and starts it.
    image = models.CharField(max_length=300)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["template", "stack"]
        constraints = [models.UniqueConstraint(fields=["template", "stack"], name="launch_template_image_one_per_stack")]

    def __str__(self):
        return f"{self.template_id} on {self.stack}: {self.image}"


class Reservation(models.Model):
    class Status(models.TextChoices):
        REQUESTED = "requested", _("Requested")  # booked and paid for at the locked price; devices allocated
        PROVISIONING = "provisioning", _("Provisioning")  # start time reached, nodes being prepared
        ACTIVE = "active", _("Active")  # the buyer has the cards; billable time runs
        COMPLETED = "completed", _("Completed")  # ended (at `end`, or early through a release)
        FAILED = "failed", _("Failed")  # provisioning or the hardware failed; nothing billed for a failed boot
        CANCELLED = "cancelled", _("Cancelled")  # called off before it started (or before it was ever active): nothing to pay
        MIGRATING = "migrating", _("Migrating")  # being re-homed after a node failure

    # Allowed next states. reservation_set_status refuses anything else.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.REQUESTED: frozenset({Status.PROVISIONING, Status.CANCELLED, Status.FAILED}),
        Status.PROVISIONING: frozenset({Status.ACTIVE, Status.CANCELLED, Status.FAILED}),
        Status.ACTIVE: frozenset({Status.COMPLETED, Status.MIGRATING, Status.FAILED}),
        # A move to other devices (marketplace.services.reservation_rehome) ends back in active, or the
        # period ends mid-move (completed), or nothing could take it (failed).
        Status.MIGRATING: frozenset({Status.ACTIVE, Status.COMPLETED, Status.FAILED}),
        Status.COMPLETED: frozenset(),
        Status.FAILED: frozenset(),
        Status.CANCELLED: frozenset(),
    }
    # States in which the reservation still holds its devices.
    HOLDING = frozenset({Status.REQUESTED, Status.PROVISIONING, Status.ACTIVE, Status.MIGRATING})

    buyer = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="reservations")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="reservations")
    # Copied from the offer at booking, so a later change to the offer never moves a booking.
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="+")
    accelerator_model = models.ForeignKey(AcceleratorModel, on_delete=models.PROTECT, related_name="+")
    card_count = models.PositiveIntegerField()
    # What the buyer runs. Required for every new booking (reservation_create defaults to "bare-ssh");
    # NULL only on reservations booked before templates existed.
    launch_template = models.ForeignKey(
        LaunchTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="reservations"
    )
    # Other accelerator models the buyer accepts if failover finds nothing of the booked model free
    # (chosen at booking from the quote, by name; empty = only the booked model). The same card count
    # of one of them may replace the booking when its node fails (marketplace.failover).
    accepted_alternatives = models.ManyToManyField(AcceleratorModel, blank=True, related_name="+")
    # Half-open [start, end), UTC. `end` moves only through reservation_release (earlier) and
    # reservation_extend (later); `booked_end` keeps what was agreed at booking.
    start = models.DateTimeField()
    end = models.DateTimeField()
    booked_end = models.DateTimeField()
    # Changed only through marketplace.services.reservation_set_status (audited).
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    # The price agreed at booking, in minor units of `currency`. Never modify: the offer's price may
    # change afterwards, the buyer's price does not.
    price_per_card_hour_minor = models.PositiveBigIntegerField()
    # Never modify (see above).
    currency = models.CharField(max_length=3, choices=Currency.choices)
    # The ECU rating at booking (NULL = not rated), so price per ECU-hour stays what the buyer saw. Never modify.
    ecu_per_card = models.DecimalField(max_digits=9, decimal_places=4, null=True, blank=True)
    # The client's Idempotency-Key: the same key returns the same reservation. "" = none given.
    idempotency_key = models.CharField(max_length=200, blank=True)
    # SHA-256 of the booking request, to tell a retry (same body) from a reused key (different body).
    request_fingerprint = models.CharField(max_length=64, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)  # set once, by an early release
    # The service period: from the instant the cards were first healthy (handed over) to the instant they
    # were given back (completed, released, failed). Written by reservation_set_status with the
    # instant the caller observed, never the wall clock of the write. The billed time is the
    # reservation's segments (ReservationSegment), which also leave out a move's gap.
    active_from = models.DateTimeField(null=True, blank=True)
    active_to = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"], condition=~Q(idempotency_key=""), name="reservation_idempotency_key_unique"
            ),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="reservation_end_after_start"),
            models.CheckConstraint(condition=Q(card_count__gt=0), name="reservation_card_count_positive"),
        ]
        indexes = [models.Index(fields=["buyer", "-start"]), models.Index(fields=["status", "start"])]

    def __str__(self):
        return f"reservation {self.pk}: {self.card_count} x {self.accelerator_model_id} in cluster {self.cluster_id}"

    @property
    def launch_image(self) -> "LaunchTemplateImage | None":
        """The image that runs on this reservation's cards (None: no template, or no image for the stack)."""
        if self.launch_template is None:
            return None
        return self.launch_template.image_for(self.accelerator_model.stack)

    @property
    def hours(self):
        from marketplace.pricing import hours_between

        return hours_between(self.start, self.end)

    # Never handed over, or taken back: nothing is billed (see the statuses' comments).
    UNBILLED = frozenset({Status.FAILED, Status.CANCELLED})
    # Not handed over yet: the price shown is the estimate for the booked window.
    ESTIMATED = frozenset({Status.REQUESTED, Status.PROVISIONING})

    @property
    def estimated_price_minor(self) -> int:
        """The booked window at the locked price: what a reservation that is not yet active will cost
        if it runs as booked. Never what is billed."""
        from marketplace.pricing import total_price_minor

        return total_price_minor(
            price_per_card_hour_minor=self.price_per_card_hour_minor, card_count=self.card_count, start=self.start, end=self.end
        )

    @property
    def billed_price_minor(self) -> int:
        """What the service periods cost: the segments' card-seconds at their locked price (an open
        segment counts up to now), rounded once. Failed and cancelled reservations: 0."""
        from marketplace.selectors import reservation_billed_price_minor

        if self.status in self.UNBILLED:
            return 0
        return reservation_billed_price_minor(reservation=self)

    @property
    def price_is_estimate(self) -> bool:
        return self.status in self.ESTIMATED

    @property
    def total_price_minor(self) -> int:
        """The one figure shown as the reservation's price: the estimate before it is handed over,
        0 when failed or cancelled, otherwise what its segments cost (see billed_price_minor)."""
        if self.status in self.ESTIMATED:
            return self.estimated_price_minor
        return self.billed_price_minor

    @property
    def price_per_ecu_hour_minor(self):
        from marketplace.pricing import price_per_ecu_hour_minor

        return price_per_ecu_hour_minor(price_per_card_hour_minor=self.price_per_card_hour_minor, ecu_per_card=self.ecu_per_card)


class ReservationStatusChange(models.Model):
    """Who moved a reservation from which status to which, and why. Append-only.

    A row whose from_status equals to_status records a change of period without a status move
    (an extension), so the timeline shows every change the buyer made.
    """

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Reservation.Status.choices, blank=True)  # "" = created
    to_status = models.CharField(max_length=16, choices=Reservation.Status.choices)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Why, as a code of marketplace.reasons.REASON_TEMPLATES plus its parameters (raw: amounts in minor
    # units, instants in UTC), so the text is rendered - and can be translated - for each reader.
    reason_code = models.CharField(max_length=40, blank=True)
    reason_params = models.JSONField(default=dict, blank=True)
    # Free text: the fallback shown when reason_code is empty or unknown (rows written before reason
    # codes existed keep their old sentence here). Never modify.
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"reservation {self.reservation_id}: {self.from_status or 'new'} -> {self.to_status}"

    @property
    def reason_text(self) -> str:
        """The reason in the reader's language and time zone (falls back to the stored free text)."""
        from marketplace.reasons import render_reason

        return render_reason(self.reason_code, self.reason_params, self.reason)


class TsTzRange(Func):
    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class ReservationSegment(models.Model):
    """An actual service period of a reservation on one node: which of its devices served the buyer
    from `started_at` to `ended_at` (NULL while it runs), for which provider and offer, at the price
    locked at booking. What billing reads (time, not usage samples).

    Written only by marketplace.services (reservation_set_status and reservation_rehome) with the
    instant the caller observed: opened when the reservation turns active (or active again after a
    move), closed when it is released, completed, fails, or its devices are moved. PostgreSQL refuses
    two segments of the same reservation on the same node whose periods overlap (a device is on one
    node, so no device is ever billed twice for the same instant).
    """

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="segments")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    device_ids = ArrayField(models.BigIntegerField())
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # Copied from the reservation when the segment opens. Never modify.
    price_per_card_hour_minor = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, choices=Currency.choices)

    class Meta:
        ordering = ["started_at", "node_id"]
        constraints = [
            ExclusionConstraint(
                name="reservation_segment_no_overlap",
                expressions=[
                    ("reservation", RangeOperators.EQUAL),
                    ("node", RangeOperators.EQUAL),
                    (TsTzRange("started_at", "ended_at", RangeBoundary()), RangeOperators.OVERLAPS),
                ],
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")), name="reservation_segment_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(device_ids__len__gt=0), name="reservation_segment_has_devices"),
        ]
        indexes = [models.Index(fields=["reservation", "ended_at"])]

    def __str__(self):
        return f"reservation {self.reservation_id} on node {self.node_id} from {self.started_at}"


class NodeAssignment(models.Model):
    """The desired state of ONE node for ONE reservation, published to the node's driver (the node agent
    polls it), and the state the node last reported. See marketplace.provisioning.

    Open while the workload may still hold the node (stopped_at is NULL): at most one open row per
    (reservation, node), and the open rows of a node hold distinct ssh_ports. A re-home onto another
    node creates a new row; the old one is stopped. Written only by marketplace.provisioning.services.
    """

    class Desired(models.TextChoices):
        RUN = "run", _("Run")
        STOP = "stop", _("Stop")

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")  # published, nothing reported yet
        RUNNING = "running", _("Running")  # the workload is up and every device of it is healthy
        FAILED = "failed", _("Failed")  # the boot failed (agent's reason) or the server gave up (deadline)
        STOPPED = "stopped", _("Stopped")  # the node confirmed the workload is gone: the row is closed

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="assignments")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="assignments")
    # The provider driver that carries it out (marketplace.provisioning.drivers.DRIVERS).
    driver = models.CharField(max_length=32, default="node_agent")
    device_ids = ArrayField(models.BigIntegerField())  # the reservation's devices on this node
    # Snapshots taken when published, so what the node runs never changes under it.
    image = models.CharField(max_length=300)
    ssh_public_keys = models.JSONField(default=list, blank=True)
    ssh_port = models.PositiveIntegerField()
    desired = models.CharField(max_length=8, choices=Desired.choices, default=Desired.RUN)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    # The node's reason for a failure, or the server's (deadline missed, cancelled). At most 500 chars.
    reason = models.TextField(blank=True)
    deadline = models.DateTimeField()  # the boot must report running before this
    # Instants are the server's clock (when a report arrived), never the agent's.
    published_at = models.DateTimeField()
    reported_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["reservation_id", "node_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "node"], condition=Q(stopped_at__isnull=True), name="node_assignment_one_open_per_node"
            ),
            models.UniqueConstraint(
                fields=["node", "ssh_port"], condition=Q(stopped_at__isnull=True), name="node_assignment_ssh_port_free"
            ),
            models.CheckConstraint(condition=Q(device_ids__len__gt=0), name="node_assignment_has_devices"),
        ]
        indexes = [
            # The agent's poll: its node's open rows.
            models.Index(fields=["node"], condition=Q(stopped_at__isnull=True), name="node_assignment_open_by_node"),
            # The sweeper: open rows past their deadline or waiting for a stop.
            models.Index(fields=["desired", "state"], condition=Q(stopped_at__isnull=True), name="node_assignment_open_by_state"),
        ]

    def __str__(self):
        return f"reservation {self.reservation_id} on node {self.node_id}: {self.desired}/{self.state}"

    @property
    def is_open(self) -> bool:
        return self.stopped_at is None


# ---------------------------------------------------------------------------------------------
# Metering (marketplace.metering): raw usage samples and their hourly rollup
# ---------------------------------------------------------------------------------------------


class UsageSample(models.Model):
    """One node agent's measurement of one device over one window [window_start, window_end). Append-only.

    The table is partitioned by day on window_start (created by RunSQL in migration 0003_usage_metering, kept by
    marketplace.metering.partitions): this model only lets the ORM read it. Rows are written only by
    marketplace.metering.services.usage_samples_ingest, in one multi-row INSERT per batch.
    The key is (device, window_start), not the agent's sample id: see marketplace/metering/__init__.py.
    """

    pk = models.CompositePrimaryKey("device_id", "window_start")
    # No FK constraints: ingestion has already checked that the node holds the device, and a
    # per-row FK probe would double the cost of the hottest insert in the system.
    device = models.ForeignKey("inventory.Device", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # The agent's UUID for this sample: evidence of which report a row came from, not the key.
    sample_id = models.UUIDField()
    node = models.ForeignKey("inventory.Node", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    # The reservation whose allocation of the device covers the window's midpoint, resolved at
    # ingest; NULL = the device was idle (kept for the network's utilization). Never modified.
    reservation = models.ForeignKey(
        Reservation, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    busy_seconds = models.FloatField()
    utilization_percent = models.FloatField()
    memory_used_mib = models.IntegerField()
    power_watts = models.FloatField()
    received_at = models.DateTimeField()

    class Meta:
        db_table = "marketplace_usagesample"

    def __str__(self):
        return f"usage of device {self.device_id} for [{self.window_start}, {self.window_end})"


class UsageHourly(models.Model):
    """Per hour, device and reservation (NULL = idle): what billing and the dashboards read.

    Recomputed from the raw samples (INSERT ... ON CONFLICT DO UPDATE) for every hour that received
    samples, so a late sample corrects its hour and a second run changes nothing. It outlives the
    raw samples (USAGE_SAMPLE_RETENTION_DAYS). Billable time does NOT come from here: see
    marketplace/metering/__init__.py.
    """

    hour = models.DateTimeField()  # the hour of the samples' window_start, UTC, on the hour
    # No FK constraints: every row is derived from samples whose device, node and reservation were
    # resolved at ingestion, and a day's rollup writes ~2.4 million rows at 100,000 cards - three
    # per-row FK triggers would be most of its cost. No single-column indexes either (db_index=False):
    # rows are read by reservation and hour (usage_hourly_reservation_hour) or by the unique key, and
    # three more indexes to maintain per written row cost the rollup more than anything reads them for.
    device = models.ForeignKey(
        "inventory.Device", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    node = models.ForeignKey(
        "inventory.Node", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    reservation = models.ForeignKey(
        Reservation, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
        related_name="usage_hours",
    )
    samples = models.PositiveIntegerField()
    busy_seconds = models.FloatField()
    utilization_mean = models.FloatField()  # mean of the samples' utilization_percent (0-100)
    memory_max_mib = models.IntegerField()
    energy_wh = models.FloatField()  # sum of power_watts x window length, in watt-hours
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["hour", "device_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "device", "reservation"], nulls_distinct=False, name="usage_hourly_unique_hour_device_reservation"
            ),
        ]
        indexes = [models.Index(fields=["reservation", "hour"], name="usage_hourly_reservation_hour")]

    def __str__(self):
        return f"usage of device {self.device_id} in hour {self.hour:%Y-%m-%d %H}:00"


class UsageRollupDirty(models.Model):
    """An hour of a device that received samples since its rollup was last computed (a work queue).

    Ingestion upserts a row per (device, hour) it touched; marketplace.metering.services.
    usage_rollup_refresh deletes the rows it takes and recomputes those hours.
    """

    pk = models.CompositePrimaryKey("device_id", "hour")
    # the primary key (device_id, hour) serves lookups by device: no second index to write per mark
    device = models.ForeignKey(
        "inventory.Device", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    hour = models.DateTimeField()
    marked_at = models.DateTimeField()

    def __str__(self):
        return f"rollup of device {self.device_id} at {self.hour} is stale"


class ReservationDowntime(models.Model):
    """Time a reservation lost to a node failure, for SLA credits: from the failed node's last heartbeat
    (`started_at`) until the reservation is served again (`ended_at`, NULL meanwhile) - when its new
    devices report healthy, or when it ends. Written by marketplace.failover; closed by
    reservation_downtime_close. Never billed: the segments leave the gap out."""

    # The causes of inventory's reliability events: a downtime and the node's event name the same cause.
    Cause = ReliabilityEvent.Cause

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="downtimes")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    cause = models.CharField(max_length=16, choices=Cause.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            # One record per failure of a node for a reservation (a redelivered task adds none).
            models.UniqueConstraint(fields=["reservation", "node", "started_at"], name="reservation_downtime_once"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")), name="reservation_downtime_ends_after_start"
            ),
        ]

    def __str__(self):
        return f"downtime of reservation {self.reservation_id} on node {self.node_id} from {self.started_at}"

    @property
    def seconds(self) -> int | None:
        return None if self.ended_at is None else int((self.ended_at - self.started_at).total_seconds())
