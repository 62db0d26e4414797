"""What the buyer's people are told about their reservations (accounts.notifications delivers it).

Called from reservation_set_status inside its transaction (the rows roll back with the move, the email
leaves only on commit) and from the ending-soon beat task.
"""

from datetime import UTC, datetime, timedelta

from django.urls import reverse

from accounts.models import NotificationKind
from accounts.notifications import notify
from accounts.timezones import format_local_time
from marketplace.models import Reservation, ReservationStatusChange
from marketplace.reasons import render_reason

Status = Reservation.Status

# How long before its end a reservation's people are told it is ending (once per end: an extension
# moves the end and so earns a new notice).
ENDING_SOON_BEFORE = timedelta(hours=1)


def _describe(reservation: Reservation) -> str:
    return f"Reservation #{reservation.pk} ({reservation.card_count} x {reservation.accelerator_model.name})"


def _link(reservation: Reservation) -> str:
    return reverse("frontend:market-reservation", args=[reservation.pk])


def reservation_status_notify(*, reservation: Reservation, change: ReservationStatusChange) -> None:
    """Tell the buyer of the moves they care about: active, failed, moved to other cards."""
    if change.to_status == Status.ACTIVE and change.from_status == Status.MIGRATING:
        kind, what = NotificationKind.RESERVATION_MIGRATED, "moved to other cards and is running again"
    elif change.to_status == Status.ACTIVE:
        kind, what = NotificationKind.RESERVATION_ACTIVE, "is active: your cards are ready"
    elif change.to_status == Status.MIGRATING:
        kind, what = NotificationKind.RESERVATION_MIGRATED, "is moving to other cards after a hardware failure"
    elif change.to_status == Status.FAILED:
        kind, what = NotificationKind.RESERVATION_FAILED, "failed"
    else:
        return
    # One body for every recipient, so its times are in UTC with the zone named (never ambiguous).
    why = render_reason(change.reason_code, change.reason_params, change.reason, tz=UTC)
    notify(
        organization=reservation.buyer, kind=kind, title=f"{_describe(reservation)} {what}",
        body=why, link=_link(reservation),
        # The audit row names the event: a retried move that changed nothing writes none and tells no one.
        dedupe_key=f"reservation:{reservation.pk}:change:{change.pk}",
    )


def reservations_notify_ending_soon(*, now: datetime) -> int:
    """Tell the buyers of reservations in service that end within ENDING_SOON_BEFORE. Runs every few
    minutes; each (reservation, end) is told once (the dedupe key holds the end). Returns how many
    reservations were looked at."""
    due = (Reservation.objects.filter(status__in=(Status.ACTIVE, Status.MIGRATING), end__gt=now,
                                      end__lte=now + ENDING_SOON_BEFORE)
           .select_related("buyer", "accelerator_model").order_by("end", "pk"))
    count = 0
    for reservation in due:
        notify(
            organization=reservation.buyer, kind=NotificationKind.RESERVATION_ENDING_SOON,
            title=f"{_describe(reservation)} ends at {format_local_time(reservation.end, tz=UTC)}",
            body="Extend it from its page to keep the cards; your machines stop at the end.",
            link=_link(reservation),
            dedupe_key=f"reservation:{reservation.pk}:ending-soon:{reservation.end.astimezone(UTC).isoformat()}",
        )
        count += 1
    return count
