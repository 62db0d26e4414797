"""The buyer's side of the market: reservations and their audit trail.

A reservation books `card_count` devices of one offer (one accelerator model in one cluster) for the
half-open period [start, end). The devices themselves are inventory.DeviceAllocation rows carrying
`reservation_id`; PostgreSQL's exclusion constraint on those rows is what makes a double booking
impossible. Every status change goes through marketplace.services.reservation_set_status.
"""

from django.db import models
from django.db.models import F, Q

from accounts.models import Organization, User
from inventory.models import AcceleratorModel, Cluster, Currency, Offer, SoftwareStack


class LaunchTemplate(models.Model):
    """A workload the buyer picks ("PyTorch 2.x", "vLLM", "bare SSH"), whatever the hardware.

    The template maps to one container image per software stack (LaunchTemplateImage); a stack with no
    image cannot run it, so quotes exclude such offers and booking refuses them. Loaded by a data
    migration from marketplace.launch.LAUNCH_TEMPLATES; operators edit them in the admin.
    """

    class WorkloadKind(models.TextChoices):
        TRAINING = "training", "Training and notebooks"
        INFERENCE = "inference", "Inference serving"
        SHELL = "shell", "Shell only"

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
        REQUESTED = "requested", "Requested"  # booked and paid for at the locked price; devices allocated
        PROVISIONING = "provisioning", "Provisioning"  # start time reached, nodes being prepared
        ACTIVE = "active", "Active"  # the buyer has the cards; billable time runs
        COMPLETED = "completed", "Completed"  # ended (at `end`, or early through a release)
        FAILED = "failed", "Failed"  # provisioning or the hardware failed; nothing billed for a failed boot
        CANCELLED = "cancelled", "Cancelled"  # called off before it started (or before it was ever active): nothing to pay
        MIGRATING = "migrating", "Migrating"  # being re-homed after a node failure

    # Allowed next states. reservation_set_status refuses anything else.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.REQUESTED: frozenset({Status.PROVISIONING, Status.CANCELLED, Status.FAILED}),
        Status.PROVISIONING: frozenset({Status.ACTIVE, Status.CANCELLED, Status.FAILED}),
        Status.ACTIVE: frozenset({Status.COMPLETED, Status.MIGRATING, Status.FAILED}),
        Status.MIGRATING: frozenset({Status.ACTIVE, Status.FAILED}),
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

    @property
    def total_price_minor(self) -> int:
        """What the reservation costs for its current period at the locked price (cancelled: 0)."""
        from marketplace.pricing import total_price_minor

        if self.status == self.Status.CANCELLED:
            return 0
        return total_price_minor(
            price_per_card_hour_minor=self.price_per_card_hour_minor, card_count=self.card_count, start=self.start, end=self.end
        )

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
