"""Who is who: users, organizations (buyers, providers or both), memberships with roles, API tokens, SSH keys."""

import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


TIME_ZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]


class User(AbstractUser):
    """A person. Signs in with the email address; belongs to organizations through memberships."""

    username = None
    email = models.EmailField(_("email address"), unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    # Times are stored in UTC and shown in this zone.
    time_zone = models.CharField(max_length=64, default="Asia/Shanghai", choices=TIME_ZONE_CHOICES)
    # The interface language and the language of the emails sent to this person (a code of
    # settings.LANGUAGES). Blank: pages follow the browser's Accept-Language, emails use LANGUAGE_CODE.
    language = models.CharField(_("language"), max_length=16, blank=True, default="", choices=settings.LANGUAGES)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []
    objects = UserManager()

    def __str__(self):
        return self.email


class Organization(models.Model):
    class Kind(models.TextChoices):
        BUYER = "buyer", _("Buyer")
        PROVIDER = "provider", _("Provider")
        BOTH = "both", _("Buyer and provider")

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # What the organization may do on the market: buy, list capacity, or both.
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BUYER)
    # Set only by `manage.py seed_demo` (never by sign-up or any form): the demo network's simulated
    # agents (`manage.py run_demo_agents`) speak for the nodes of these organizations and no others.
    is_demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(Lower("name"), name="organization_name_unique_ci")]

    def __str__(self):
        return self.name

    @property
    def is_provider(self) -> bool:
        return self.kind in (self.Kind.PROVIDER, self.Kind.BOTH)

    @property
    def is_buyer(self) -> bool:
        return self.kind in (self.Kind.BUYER, self.Kind.BOTH)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")  # everything, including members and tokens
        ADMIN = "admin", _("Admin")  # everything but making, changing or removing owners
        MEMBER = "member", _("Member")  # day-to-day work: list capacity, book, see usage
        FINANCE_VIEWER = "finance_viewer", _("Finance viewer")  # reads invoices and spend; changes nothing

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"


class ApiToken(models.Model):
    """A REST API key acting as one member of one organization.

    Only a SHA-256 hash of the key is stored; the key itself is shown once, at creation.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the key, to find the row and to show the user which key is which.
    prefix = models.CharField(max_length=16, unique=True)
    # Never modified after creation: a changed hash would silently revoke the key.
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Set once; a revoked key never works again.
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SshPublicKey(models.Model):
    """A public key its user logs in with on the machines their organization rents.

    Keys are revoked, never deleted: a reservation's history can later show which key was handed to
    its machines. The key fields are never modified after creation (a changed key would be another
    key under the old fingerprint); to change a key, revoke it and add the new one.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    key_type = models.CharField(max_length=64)  # e.g. ssh-ed25519; one of accounts.ssh_keys.ACCEPTED_TYPES
    key_data = models.TextField()  # the base64 blob, as OpenSSH writes it
    comment = models.CharField(max_length=255, blank=True)
    bits = models.PositiveIntegerField()
    # As `ssh-keygen -lf` prints it (SHA256:<unpadded base64>): what users compare to recognise a key.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once; a revoked key is no longer given to new reservations' machines.
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "fingerprint"],
                condition=models.Q(revoked_at__isnull=True),
                name="ssh_key_fingerprint_unique_active",
                violation_error_message=_("You already added this key."),
            )
        ]

    def __str__(self):
        return f"{self.name} ({self.fingerprint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def authorized_keys_line(self) -> str:
        """The line provisioning writes to authorized_keys (no options: the platform adds none)."""
        return f"{self.key_type} {self.key_data} {self.comment}".rstrip()


class NotificationKind(models.TextChoices):
    """What a notification is about. Each user chooses, per kind, in-page and email (NotificationPreference)."""

    RESERVATION_ACTIVE = "reservation_active", _("Reservation active")
    RESERVATION_FAILED = "reservation_failed", _("Reservation failed")
    RESERVATION_MIGRATED = "reservation_migrated", _("Reservation migrated")
    RESERVATION_ENDING_SOON = "reservation_ending_soon", _("Reservation ending soon")
    INVOICE_ISSUED = "invoice_issued", _("Invoice issued")
    PAYMENT_FAILED = "payment_failed", _("Payment failed")
    PAYOUT_SENT = "payout_sent", _("Payout sent")


class Notification(models.Model):
    """One thing one user is told about, in the page and/or by email (accounts.notifications.notify).

    A row exists when at least one channel was on for the user at the time; `dedupe_key` is unique per
    user, so the same event told twice (a redelivered task, a retried transition) is one row and one email.
    """

    class Email(models.TextChoices):
        NONE = "none", _("Not wanted")  # the user's preference for this kind was off
        PENDING = "pending", _("Pending")  # waiting for the email task (enqueued on commit)
        SENT = "sent", _("Sent")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    # As rendered for the recipient when it was written (their language and zone): what the email says.
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    # The words as data ({"title": ..., "body": ...}, accounts.notifications.Message.to_json), so a page
    # shows them in the language and zone of whoever reads it; empty for a notification given as text.
    message = models.JSONField(default=dict, blank=True)
    link = models.CharField(max_length=500, blank=True)  # a path on this site, e.g. /market/reservations/12/
    dedupe_key = models.CharField(max_length=200)
    # False when the user turned in-page off for the kind (the row is kept only for the email).
    in_page = models.BooleanField(default=True)
    email = models.CharField(max_length=8, choices=Email.choices, default=Email.NONE)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "dedupe_key"], name="notification_dedupe_unique")]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="notification_user_recent"),
            models.Index(fields=["user"], condition=models.Q(read_at__isnull=True, in_page=True), name="notification_user_unread"),
            # The email task and its sweeper look up what is still to send.
            models.Index(fields=["dedupe_key"], condition=models.Q(email="pending"), name="notification_email_pending"),
        ]

    def __str__(self):
        return f"{self.kind} for {self.user}: {self.title}"

    @property
    def shown_title(self) -> str:
        """The title in the active language and zone (accounts.notifications.notification_text)."""
        from accounts.notifications import notification_text

        return notification_text(self, "title")

    @property
    def shown_body(self) -> str:
        from accounts.notifications import notification_text

        return notification_text(self, "body")


class NotificationPreference(models.Model):
    """A user's choice for one kind; without a row the defaults in accounts.notifications apply."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    email = models.BooleanField()
    in_page = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="notification_preference_unique")]

    def __str__(self):
        return f"{self.user} {self.kind}: email={self.email} in_page={self.in_page}"


class Job(models.Model):
    """One long operation started from a page and run by a Celery task (accounts.jobs), with its
    progress and its result, shown at /jobs/<id>/.

    Visible to the members of `organization`; a job started by platform staff outside any organization
    (organization empty, e.g. finance's billing run) only to its owner.
    """

    class Kind(models.TextChoices):
        NODE_IMPORT = "node_import", _("Node import")
        BILLING_RUN = "billing_run", _("Billing run")
        INVOICE_EXPORT = "invoice_export", _("Invoice CSV export")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    FINISHED = frozenset({Status.DONE, Status.FAILED})

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="jobs")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)  # 0: not known yet
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    # The uploaded file the task works on (a node import), kept in the database so a worker on
    # another machine reads it without a shared disk; emptied once the job finishes.
    input_data = models.BinaryField(null=True, blank=True, editable=False)
    result = models.JSONField(default=dict, blank=True)
    result_link = models.CharField(max_length=500, blank=True)  # a path on this site, e.g. /provider/clusters/3/
    result_file = models.BinaryField(null=True, blank=True, editable=False)
    result_filename = models.CharField(max_length=200, blank=True)
    result_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="job_organization_recent")]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.progress_total:
            return 0
        return min(100, self.progress_done * 100 // self.progress_total)
