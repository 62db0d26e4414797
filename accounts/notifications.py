"""Notifications: who is told what, in the page and by email, as each user chose.

Writes (`notify`, `notification_mark_read`, ...) and reads (`notification_list`, ...) of one small
domain. The apps where events happen compose the words and call `notify` inside their transaction
(marketplace.notifications, billing.notifications): the rows commit or roll back with the event, and
the email task is enqueued only on commit (a rolled-back transition sends nothing).

The words are a `Message`: a translatable template and its parameters, never finished English. It is
kept with the notification as data: the page and the API render it in the reader's current language
and zone; each recipient's stored title and body, and their email (subject and footer too), are
rendered in their own language (User.language, else LANGUAGE_CODE) and time zone, times with the zone
named.
"""

import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from accounts.models import Membership, Notification, NotificationKind, NotificationPreference, Organization, User
from accounts.timezones import format_local_time
from config.tasks import enqueue_after_commit

Kind = NotificationKind
Role = Membership.Role

# Who in an organization hears of each kind. Reservation events concern the people who use the cards
# (finance viewers read spend, not machines); money concerns owners, admins and finance viewers.
KIND_ROLES: dict[str, frozenset[str]] = {
    Kind.RESERVATION_ACTIVE: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Kind.RESERVATION_FAILED: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Kind.RESERVATION_MIGRATED: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Kind.RESERVATION_ENDING_SOON: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    Kind.INVOICE_ISSUED: frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE_VIEWER}),
    Kind.PAYMENT_FAILED: frozenset({Role.OWNER, Role.ADMIN, Role.FINANCE_VIEWER}),
    Kind.PAYOUT_SENT: frozenset({Role.OWNER, Role.ADMIN}),
}


@dataclass(frozen=True)
class Choice:
    email: bool
    in_page: bool


# Without a preference row: everything in the page; email only for what needs acting on or keeping.
DEFAULTS: dict[str, Choice] = {
    Kind.RESERVATION_ACTIVE: Choice(email=False, in_page=True),
    Kind.RESERVATION_FAILED: Choice(email=True, in_page=True),
    Kind.RESERVATION_MIGRATED: Choice(email=True, in_page=True),
    Kind.RESERVATION_ENDING_SOON: Choice(email=False, in_page=True),
    Kind.INVOICE_ISSUED: Choice(email=True, in_page=True),
    Kind.PAYMENT_FAILED: Choice(email=True, in_page=True),
    Kind.PAYOUT_SENT: Choice(email=False, in_page=True),
}


@dataclass(frozen=True)
class Message:
    """Words to render for each reader. `text` is an English template with {name} placeholders
    (python-brace-format), marked with gettext_noop so makemessages finds it and translated when it is
    rendered; `params` fill it, each rendered in the reader's language and zone:

    - a datetime -> accounts.timezones.format_local_time ("2026-12-10 09:00 CST"),
    - a Message -> rendered the same way (a phrase inside a sentence),
    - a Call -> one of FORMATTERS applied to its arguments (money, a reservation's reason, a date),
    - anything else (numbers, ids, names) -> as it is.

    A notification keeps its Message as JSON (Notification.message), so the in-page list shows it in
    the language and zone of whoever reads the page, and each email is rendered for its recipient.
    """

    text: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.text, str):  # a lazy translation would be stored in one language
            raise TypeError("A Message's text is the English template marked with gettext_noop, not gettext_lazy.")

    def to_json(self) -> dict:
        return {"text": self.text, "params": {name: _param_to_json(value) for name, value in self.params.items()}}

    def render(self) -> str:
        """The text in the active language and zone."""
        return render_message(self.to_json())


class Call:
    """A value formatted when it is read: FORMATTERS[name](*args), with JSON-able args, e.g.
    Call("money", 164000, "CNY") -> "CNY 1,640.00" for an English reader, "¥1,640.00" for a Chinese one."""

    def __init__(self, name: str, *args):
        self.name, self.args = name, args


# What a Call may name: dotted paths resolved on first use (accounts depends on no other app, as in
# config.api's DOMAIN_ERRORS), each called with the reader's language and zone active.
FORMATTERS = {
    "money": "inventory.pricing.format_money",  # (amount_minor, currency)
    "reason": "marketplace.reasons.render_reason",  # (reason_code, reason_params, fallback text)
    "date": "accounts.timezones.format_local_date",  # (ISO 8601 instant)
    "zone": "accounts.timezones.local_zone_abbreviation",  # (ISO 8601 instant): "CST"
    "decline": "billing.declines.decline_reason_for_notification",  # (Stripe's or our decline code)
}


def _param_to_json(value: Any) -> dict:
    if isinstance(value, Message):
        return {"message": value.to_json()}
    if isinstance(value, datetime):
        aware = value if timezone.is_aware(value) else value.replace(tzinfo=UTC)
        return {"time": aware.astimezone(UTC).isoformat()}
    if isinstance(value, Call):
        if value.name not in FORMATTERS:
            raise ValueError(f"Unknown formatter {value.name!r}: add it to accounts.notifications.FORMATTERS.")
        return {"call": value.name, "args": list(value.args)}
    return {"value": str(value)}


def render_message(spec: dict) -> str:
    """A stored Message in the active language and zone."""
    values = {name: _render_param(param) for name, param in spec.get("params", {}).items()}
    return _(spec["text"]).format(**values) if spec["text"] else ""


def _render_param(param: dict) -> str:
    if "message" in param:
        return render_message(param["message"])
    if "time" in param:
        return format_local_time(datetime.fromisoformat(param["time"]))
    if "call" in param:
        return str(import_string(FORMATTERS[param["call"]])(*param["args"]))
    return param.get("value", "")


def notification_text(notification: Notification, part: str) -> str:
    """The notification's title or body for whoever reads it now (active language and zone); the text
    rendered for its recipient when it was written if there is no Message (or it no longer renders)."""
    spec = (notification.message or {}).get(part)
    if spec:
        try:
            return render_message(spec)
        except (KeyError, IndexError, TypeError, ValueError, ImportError):
            pass
    return getattr(notification, part)


Text = str | Message


def recipient_language(user: User) -> str:
    """The language a person is written to in: their choice, else the site's default."""
    return user.language or settings.LANGUAGE_CODE


def recipient_zone(user: User) -> zoneinfo.ZoneInfo:
    """The zone a person reads times in; UTC for a zone this machine does not know."""
    try:
        return zoneinfo.ZoneInfo(user.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def render_for(user: User, text: Text) -> str:
    """`text` as `user` reads it: in their language and zone (a plain str is already finished)."""
    if not isinstance(text, Message):
        return str(text)
    with translation.override(recipient_language(user)), timezone.override(recipient_zone(user)):
        return text.render()


def _rendered_per_reader(users: Iterable[User], *texts: Text) -> dict[int, tuple[str, ...]]:
    """Each user's rendering of `texts`, rendered once per (language, zone) however many readers share it."""
    cache: dict[tuple[str, str], tuple[str, ...]] = {}
    out = {}
    for user in users:
        key = (recipient_language(user), str(recipient_zone(user)))
        if key not in cache:
            cache[key] = tuple(render_for(user, text) for text in texts)
        out[user.pk] = cache[key]
    return out


# --- selectors -----------------------------------------------------------------------------------------------------


def notification_preferences_get(*, user: User) -> dict[str, Choice]:
    """Every kind with the user's choice (their row, or the default)."""
    choices = dict(DEFAULTS)
    for row in NotificationPreference.objects.filter(user=user):
        choices[row.kind] = Choice(email=row.email, in_page=row.in_page)
    return choices


def notification_list(*, user: User) -> QuerySet[Notification]:
    """The user's own in-page notifications, newest first."""
    return Notification.objects.filter(user=user, in_page=True).order_by("-created_at", "-id")


def notification_unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, in_page=True, read_at__isnull=True).count()


def notification_recipients(*, organization: Organization, kind: str) -> list[int]:
    """Ids of the organization's active users whose role hears of `kind`."""
    return list(
        Membership.objects.filter(organization=organization, role__in=KIND_ROLES[kind], user__is_active=True)
        .order_by("user_id").values_list("user_id", flat=True)
    )


# --- services ------------------------------------------------------------------------------------------------------


def notify(
    *,
    kind: str,
    title: Text,
    dedupe_key: str,
    organization: Organization | None = None,
    users: Iterable[User] | None = None,
    body: Text = "",
    link: str = "",
) -> None:
    """Tell the members of `organization` whose role hears of `kind` (KIND_ROLES), and/or `users`.

    Call it inside the transaction of the event: the rows are written there and the email task is
    enqueued on commit. `dedupe_key` names the event (e.g. "reservation:12:change:345"): a user is told
    of one key once, however often the event is reported. `title` and `body` are Messages, rendered for
    each recipient in their language and zone (a plain str is shown as it is to everyone).
    """
    if kind not in KIND_ROLES:
        raise ValueError(f"Unknown notification kind {kind!r}: add it to accounts.models.NotificationKind.")
    if not dedupe_key:
        raise ValueError("A notification needs a dedupe_key naming its event.")
    user_ids = set(notification_recipients(organization=organization, kind=kind)) if organization is not None else set()
    user_ids |= {user.pk for user in users or ()}
    if not user_ids:
        return
    chosen = {row.user_id: Choice(email=row.email, in_page=row.in_page)
              for row in NotificationPreference.objects.filter(user_id__in=user_ids, kind=kind)}
    wanted = [user_id for user_id in sorted(user_ids)
              if chosen.get(user_id, DEFAULTS[kind]).email or chosen.get(user_id, DEFAULTS[kind]).in_page]
    # Kept as JSON: the page renders it again for whoever reads it, in their language and zone.
    message = {part: text.to_json() for part, text in (("title", title), ("body", body)) if isinstance(text, Message)}
    readers = User.objects.filter(pk__in=wanted).only("pk", "language", "time_zone").order_by("pk")
    words = _rendered_per_reader(readers, title, body)
    rows = []
    for user_id in wanted:
        choice = chosen.get(user_id, DEFAULTS[kind])
        user_title, user_body = words[user_id]
        rows.append(Notification(
            user_id=user_id, kind=kind, title=user_title[:200], body=user_body, link=link[:500], dedupe_key=dedupe_key[:200],
            message=message,
            in_page=choice.in_page, email=Notification.Email.PENDING if choice.email else Notification.Email.NONE,
        ))
    # ON CONFLICT DO NOTHING: an event told again leaves the first row (and its email) alone.
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    if any(row.email == Notification.Email.PENDING for row in rows):
        from accounts.tasks import notification_emails_send_task

        key = dedupe_key[:200]
        # Enqueued even when the rows were already there: the task sends only what is still pending.
        enqueue_after_commit(notification_emails_send_task, dedupe_key=key)


def notification_emails_send(*, dedupe_key: str) -> int:
    """Send the pending emails of one event, each under its row lock, and mark them sent. A second run
    (a redelivered task) finds nothing pending. Returns how many were sent."""
    sent = 0
    pending = Notification.objects.filter(dedupe_key=dedupe_key, email=Notification.Email.PENDING).values_list("pk", flat=True)
    for pk in list(pending):
        with transaction.atomic():
            notification = (Notification.objects.select_for_update(skip_locked=True).select_related("user")
                            .filter(pk=pk, email=Notification.Email.PENDING).first())
            if notification is None:  # sent by another run meanwhile
                continue
            subject, message = _email_text(notification)
            # Sent inside the lock: a crash between sending and the commit sends it again on redelivery
            # (at least once), never zero times.
            send_mail(subject=subject, message=message, from_email=None, recipient_list=[notification.user.email])
            notification.email = Notification.Email.SENT
            notification.email_sent_at = timezone.now()
            notification.save(update_fields=["email", "email_sent_at"])
            sent += 1
    return sent


def _email_text(notification: Notification) -> tuple[str, str]:
    """Subject and text of one notification's email, in its recipient's language (the title and body
    were rendered for them when the row was written)."""
    with translation.override(recipient_language(notification.user)):
        lines = [notification.body] if notification.body else []
        if notification.link:
            lines.append(f"{settings.SITE_URL}{notification.link}")
        lines.append(_("Choose which notifications you get: %(url)s")
                     % {"url": f"{settings.SITE_URL}/accounts/notifications/preferences/"})
        # Translators: the subject of every notification email; "title" is the notification's own title.
        subject = _("Computeflow: %(title)s") % {"title": notification.title}
    return subject, "\n\n".join(lines)


def notification_emails_sweep(*, older_than: timedelta = timedelta(minutes=5)) -> int:
    """Send emails still pending well after their event (the task was lost: Redis down at the commit,
    the queue flushed). Returns how many were sent."""
    keys = (Notification.objects.filter(email=Notification.Email.PENDING, created_at__lt=timezone.now() - older_than)
            .order_by().values_list("dedupe_key", flat=True).distinct())
    return sum(notification_emails_send(dedupe_key=key) for key in list(keys[:500]))


def notification_mark_read(*, notification: Notification) -> Notification:
    """Mark one read (the first time only: reading twice keeps the first instant)."""
    if notification.read_at is None:
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=timezone.now())
        notification.refresh_from_db(fields=["read_at"])
    return notification


def notifications_mark_all_read(*, user: User) -> int:
    return Notification.objects.filter(user=user, in_page=True, read_at__isnull=True).update(read_at=timezone.now())


@transaction.atomic
def notification_preferences_set(*, user: User, choices: dict[str, Choice]) -> None:
    """Store the user's choice for each kind given (unknown kinds are refused)."""
    unknown = set(choices) - set(Kind.values)
    if unknown:
        raise ValueError(f"Unknown notification kinds: {', '.join(sorted(unknown))}.")
    for kind, choice in choices.items():
        NotificationPreference.objects.update_or_create(user=user, kind=kind,
                                                        defaults={"email": choice.email, "in_page": choice.in_page})
