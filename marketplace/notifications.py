"""What the buyer's people are told about their reservations (accounts.notifications delivers it).

Called from reservation_set_status inside its transaction (the rows roll back with the move, the email
leaves only on commit) and from the ending-soon beat task. The words are Messages (templates marked
with gettext_noop, parameters kept as data): each person reads them in their own language, with times
in their own zone.
"""

from datetime import UTC, datetime, timedelta

from django.urls import reverse
from django.utils.translation import gettext_noop

from accounts.models import NotificationKind
from accounts.notifications import Call, Message, notify
from marketplace.models import Reservation, ReservationStatusChange

Status = Reservation.Status

# How long before its end a reservation's people are told it is ending (once per end: an extension
# moves the end and so earns a new notice).
ENDING_SOON_BEFORE = timedelta(hours=1)

# What each move says; {subject} is _describe's phrase (placeholders are named after no glossary term).
ACTIVE = gettext_noop("{subject} is active: your cards are ready")
MIGRATED_BACK = gettext_noop("{subject} moved to other cards and is running again")
MIGRATING = gettext_noop("{subject} is moving to other cards after a hardware failure")
FAILED = gettext_noop("{subject} failed")


def _describe(reservation: Reservation) -> Message:
    # Translators: names a reservation, e.g. "Reservation #12 (16 x NVIDIA H100)": 16 cards of that model.
    return Message(gettext_noop("Reservation #{id} ({count} x {model})"),
                   {"id": reservation.pk, "count": reservation.card_count, "model": reservation.accelerator_model.name})


def _link(reservation: Reservation) -> str:
    return reverse("frontend:market-reservation", args=[reservation.pk])


def reservation_status_notify(*, reservation: Reservation, change: ReservationStatusChange) -> None:
    """Tell the buyer of the moves they care about: active, failed, moved to other cards."""
    if change.to_status == Status.ACTIVE and change.from_status == Status.MIGRATING:
        kind, what = NotificationKind.RESERVATION_MIGRATED, MIGRATED_BACK
    elif change.to_status == Status.ACTIVE:
        kind, what = NotificationKind.RESERVATION_ACTIVE, ACTIVE
    elif change.to_status == Status.MIGRATING:
        kind, what = NotificationKind.RESERVATION_MIGRATED, MIGRATING
    elif change.to_status == Status.FAILED:
        kind, what = NotificationKind.RESERVATION_FAILED, FAILED
    else:
        return
    # The reason as its code and parameters (marketplace.reasons): its times in the reader's zone, its
    # words in the reader's language.
    why = Call("reason", change.reason_code, change.reason_params, change.reason)
    notify(
        organization=reservation.buyer, kind=kind, title=Message(what, {"subject": _describe(reservation)}),
        body=Message("{why}", {"why": why}), link=_link(reservation),
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
            title=Message(gettext_noop("{subject} ends at {end}"), {"subject": _describe(reservation), "end": reservation.end}),
            body=Message(gettext_noop("Extend it from its page to keep the cards; your machines stop at the end.")),
            link=_link(reservation),
            dedupe_key=f"reservation:{reservation.pk}:ending-soon:{reservation.end.astimezone(UTC).isoformat()}",
        )
        count += 1
    return count
