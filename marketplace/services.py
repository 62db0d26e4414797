"""Writes of the market: booking, cancelling, releasing and extending reservations.

Every status change goes through reservation_set_status (locks the row, checks TRANSITIONS, writes
the audit row). Devices are booked through inventory.allocations inside the same transaction as the
Reservation row, so a lost race (AllocationConflict) rolls everything back: no partial booking.
"""

import hashlib
import json
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization, User
from inventory.allocations import (
    AllocationConflict,
    device_allocations_book,
    device_allocations_create,
    device_allocations_for_reservation,
    device_allocations_release,
    device_allocations_truncate,
    reservation_devices_unhealthy,
)
from inventory.market_selectors import maintenance_overlaps, offer_lock_for_booking
from inventory.models import Offer, Site
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_for_booking
from marketplace.models import Reservation, ReservationStatusChange
from marketplace.reasons import REASON_TEMPLATES, ReasonCode, money_param, time_param
from marketplace.windows import offer_terms_breach, window_errors

# A sane ceiling for one booking (the largest clusters hold a few thousand cards).
MAX_CARDS_PER_BOOKING = 4096
# How often a booking re-picks devices after losing a race for them before giving up with 409.
BOOKING_ATTEMPTS = 5

CONFLICT_MESSAGE = "Those cards were just booked by someone else - pick another time, fewer cards or another offer."


class BookingConflict(Exception):
    """The booking lost to the current state: cards that were free when it picked them were taken by a
    concurrent writer (a real race), or the offer or its hardware stopped being bookable. Maps to 409."""

    def __init__(self, message: str = CONFLICT_MESSAGE, *, cards_free: int | None = None):
        super().__init__(message)
        self.message = message
        self.cards_free = cards_free


class InsufficientCapacity(BookingConflict):
    """Fewer cards are free in the window than asked for - no race, there are just not enough. Maps to 409
    with its own code and the free count, so the buyer can ask for fewer instead of retrying."""

    def __init__(self, *, cards_free: int, cards_asked: int):
        if cards_free:
            message = (f"Only {cards_free} of the {cards_asked} cards are free in that window - "
                       f"book {cards_free} or fewer, pick another time or another offer.")
        else:
            message = f"None of the {cards_asked} cards you asked for is free in that window - pick another time or another offer."
        super().__init__(message, cards_free=cards_free)
        self.cards_asked = cards_asked


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request. Maps to 422."""


class ReservationStateError(Exception):
    """The reservation's status or timing does not allow this action. Maps to 409."""


def _fingerprint(*, offer_id: int, card_count: int, start: datetime, end: datetime, launch_template: str) -> str:
    """SHA-256 of the request. Times are normalized to UTC first: the same instant sent as +08:00
    and as Z is the same request (a retry), not a reused key."""
    body = json.dumps(
        {
            "offer": offer_id,
            "cards": card_count,
            "start": start.astimezone(UTC).isoformat(),
            "end": end.astimezone(UTC).isoformat(),
            "launch_template": launch_template,
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _validate_booking(*, card_count: int, start: datetime, end: datetime, now: datetime) -> None:
    errors = window_errors(start=start, end=end, now=now)
    if card_count is None or card_count < 1:
        errors["card_count"] = ["Book at least one card."]
    elif card_count > MAX_CARDS_PER_BOOKING:
        errors["card_count"] = [f"At most {MAX_CARDS_PER_BOOKING} cards per booking."]
    # The offer's own terms (active, duration bounds, rentable period) are checked in
    # _reservation_book, on the row read under the booking's lock: never on the caller's copy.
    if errors:
        raise ValidationError(errors)


def _offer_terms_errors(
    *, offer: Offer, start: datetime, end: datetime, rentable_from: datetime | None = None, check_minimum: bool = True
) -> dict[str, list[str]]:
    """marketplace.windows' rule for the offer's terms, as field errors. One rule for booking and extending."""
    breach = offer_terms_breach(
        min_duration_hours=offer.min_duration_hours, max_duration_hours=offer.max_duration_hours,
        rentable_period=offer.rentable_period, start=start, end=end, rentable_from=rentable_from,
        check_minimum=check_minimum,
    )
    errors: dict[str, list[str]] = {}
    if breach.duration:
        errors["end"] = [f"This offer rents for {offer.min_duration_hours} to {offer.max_duration_hours} hours in one booking."]
    if breach.rentable_period:
        errors["start"] = ["The capacity is not rentable for that whole period."]
    return errors


def _existing_for_key(*, organization: Organization, key: str, fingerprint: str) -> Reservation | None:
    existing = Reservation.objects.filter(buyer=organization, idempotency_key=key).first()
    if existing is not None and existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different booking; use a new key for a new booking."
        )
    return existing


def reservation_create(
    *,
    organization: Organization,
    created_by: User | None,
    offer: Offer,
    card_count: int,
    start: datetime,
    end: datetime,
    idempotency_key: str = "",
    launch_template: str | None = None,
) -> tuple[Reservation, bool]:
    """Book `card_count` devices of `offer` for [start, end) at today's price, to run `launch_template`.

    `launch_template` is a template's slug; None means marketplace.launch.DEFAULT_LAUNCH_TEMPLATE
    ("bare-ssh"). The offer's software stack must have an image for it (ValidationError on
    `launch_template` otherwise).

    Returns (reservation, created). With an idempotency key, a retry of the same request returns
    the first reservation (created=False); the same key with a different request raises
    IdempotencyKeyReused. Raises BookingConflict (nothing written) when the cards are not free,
    ValidationError for bad input.
    """
    if not organization.is_buyer:
        raise ValidationError({"organization": ["Only buyer organizations can book."]})
    key = (idempotency_key or "").strip()
    if len(key) > 200:
        raise ValidationError({"idempotency_key": ["At most 200 characters."]})
    if not key.isprintable():
        # A NUL byte cannot be stored (and control characters have no business in a key): refuse, don't crash.
        raise ValidationError({"idempotency_key": ["Use printable characters only (a UUID is a good key)."]})
    template_slug = launch_template or DEFAULT_LAUNCH_TEMPLATE
    fingerprint = _fingerprint(offer_id=offer.pk, card_count=card_count, start=start, end=end, launch_template=template_slug)
    if key:
        existing = _existing_for_key(organization=organization, key=key, fingerprint=fingerprint)
        if existing is not None:
            return existing, False
    _validate_booking(card_count=card_count, start=start, end=end, now=timezone.now())
    # The model (and so the stack) of an offer never changes, so the caller's copy is good enough here.
    template = launch_template_for_booking(slug=template_slug, stack=offer.accelerator_model.stack)
    try:
        reservation = _reservation_book(
            organization=organization, created_by=created_by, offer=offer, card_count=card_count,
            start=start, end=end, key=key, fingerprint=fingerprint, launch_template=template,
        )
    except IntegrityError as error:
        # A concurrent request with the same key committed first: answer with its reservation.
        if key and "reservation_idempotency_key_unique" in str(error):
            existing = _existing_for_key(organization=organization, key=key, fingerprint=fingerprint)
            if existing is not None:
                return existing, False
        raise
    return reservation, True


@transaction.atomic
def _reservation_book(
    *, organization, created_by, offer: Offer, card_count: int, start, end, key: str, fingerprint: str, launch_template
) -> Reservation:
    # Five statements: lock and read the offer, read its duration terms (under that lock), insert the
    # reservation, pick and allocate its devices, write the audit row (plus BEGIN / COMMIT). Bookings of one offer queue at the lock,
    # so each picks devices after the previous one committed. The exclusion constraint stays the
    # real guarantee: maintenance windows and extensions do not take this lock, and devices they
    # took meanwhile are skipped and replaced below.
    terms = offer_lock_for_booking(offer_id=offer.pk)
    if terms is None:
        raise Offer.DoesNotExist("This offer does not exist.")
    if not terms.is_active:
        raise ValidationError({"offer": ["This offer has been withdrawn."]})
    # The duration bounds and rentable period of the locked row (same transaction, after the lock:
    # the committed version nobody can change before we commit), not of the caller's possibly stale copy.
    locked_offer = Offer.objects.only("min_duration_hours", "max_duration_hours", "rentable_period").get(pk=terms.offer_id)
    terms_errors = _offer_terms_errors(offer=locked_offer, start=start, end=end)
    if terms_errors:
        raise ValidationError(terms_errors)
    if terms.site_lifecycle != Site.Lifecycle.ONLINE:
        raise BookingConflict("This site is not online, so its cards cannot be booked.", cards_free=0)
    reservation = Reservation.objects.create(
        buyer=organization,
        created_by=created_by,
        offer_id=terms.offer_id,
        cluster_id=terms.cluster_id,
        accelerator_model_id=terms.accelerator_model_id,
        card_count=card_count,
        launch_template=launch_template,
        start=start,
        end=end,
        booked_end=end,
        status=Reservation.Status.REQUESTED,
        # the price and rating as read under the lock: what the buyer pays, whatever the offer says later
        price_per_card_hour_minor=terms.price_per_card_hour_minor,
        currency=terms.currency,
        ecu_per_card=terms.ecu_per_card,
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )
    allocated = 0
    for attempt in range(BOOKING_ATTEMPTS):
        wanted = card_count - allocated
        free, taken = device_allocations_book(
            cluster_id=terms.cluster_id, accelerator_model_id=terms.accelerator_model_id, start=start, end=end,
            card_count=wanted, reservation_id=reservation.pk,
        )
        allocated += taken
        if allocated == card_count:
            break
        # Not enough free cards: raising rolls the transaction back, nothing of this booking remains.
        if free < wanted and attempt == 0:
            # Short from the first pick: the window never had enough, whoever else is booking. Say how many.
            raise InsufficientCapacity(cards_free=allocated, cards_asked=card_count)
        if free < wanted:
            # Enough were free at the first pick, but a concurrent booking took some and none are left to replace them.
            raise BookingConflict(
                f"{CONFLICT_MESSAGE} Only {allocated} of the {card_count} cards are free for that period now.",
                cards_free=allocated,
            )
        # else someone took some of the devices picked a moment ago: pick others for the rest
    else:
        raise BookingConflict()  # lost the race every time: how many are free now is unknown
    ReservationStatusChange.objects.create(
        reservation=reservation, from_status="", to_status=Reservation.Status.REQUESTED, actor=created_by,
        reason_code=ReasonCode.BOOKED,
        reason_params={"cards": card_count, "price": money_param(terms.price_per_card_hour_minor, terms.currency)},
    )
    return reservation


@transaction.atomic
def reservation_set_status(
    *,
    reservation: Reservation,
    status: str,
    actor: User | None = None,
    reason: str = "",
    reason_code: str = "",
    reason_params: dict | None = None,
) -> Reservation:
    """Move a reservation to `status`: locks the row, checks TRANSITIONS, writes the audit row.

    The why is `reason_code` + `reason_params` (marketplace.reasons), rendered for each reader; `reason`
    is free text, shown only when there is no code. Setting the status it already has is a no-op
    (retried tasks and double clicks are harmless).
    """
    if reason_code and reason_code not in REASON_TEMPLATES:
        raise ValueError(f"Unknown reason code {reason_code!r}: add it to marketplace.reasons.REASON_TEMPLATES.")
    reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
    if reservation.status == status:
        return reservation
    if status not in Reservation.TRANSITIONS.get(reservation.status, frozenset()):
        raise ReservationStateError(f"A reservation cannot go from {reservation.status} to {status}.")
    ReservationStatusChange.objects.create(
        reservation=reservation, from_status=reservation.status, to_status=status, actor=actor, reason=reason[:300],
        reason_code=reason_code, reason_params=reason_params or {},
    )
    reservation.status = status
    reservation.save(update_fields=["status", "updated_at"])
    return reservation


def _operator_note(*, by_operator: bool, reason: str) -> str:
    """An operator acting on a buyer's reservation must say why (it is shown in the buyer's timeline)."""
    note = (reason or "").strip()
    if by_operator and not note:
        raise ValidationError({"reason": ["Say why: the buyer sees this note in the reservation's timeline."]})
    return note[:250]


@transaction.atomic
def reservation_cancel(*, reservation: Reservation, actor: User | None, reason: str = "", by_operator: bool = False) -> Reservation:
    """Call a booking off before it starts: its devices are freed and there is nothing to pay.

    `by_operator`: a platform operator acts for the buyer (`actor` is the operator); `reason` is then
    required and shown in the timeline as the operator's note.
    """
    note = _operator_note(by_operator=by_operator, reason=reason)
    reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
    if reservation.status == Reservation.Status.CANCELLED:
        return reservation
    if timezone.now() >= reservation.start:
        raise ReservationStateError("This reservation has started: release it early instead of cancelling.")
    if reservation.status not in (Reservation.Status.REQUESTED, Reservation.Status.PROVISIONING):
        raise ReservationStateError(f"A {reservation.status} reservation cannot be cancelled.")
    device_allocations_release(reservation_id=reservation.pk)
    if by_operator:
        why = {"reason_code": ReasonCode.OPERATOR_CANCELLED, "reason_params": {"note": note}}
    else:
        why = {"reason": note} if note else {"reason_code": ReasonCode.CANCELLED_BY_BUYER}
    return reservation_set_status(reservation=reservation, status=Reservation.Status.CANCELLED, actor=actor, **why)


@transaction.atomic
def reservation_release(*, reservation: Reservation, actor: User | None, reason: str = "", by_operator: bool = False) -> Reservation:
    """Give the cards back early, after the start: the period (and the bill) ends now.

    `by_operator`: as for reservation_cancel (the operator's note is required).
    """
    note = _operator_note(by_operator=by_operator, reason=reason)
    reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
    now = timezone.now()
    if reservation.status in (Reservation.Status.COMPLETED, Reservation.Status.CANCELLED) and reservation.released_at:
        return reservation  # released already
    if now < reservation.start:
        raise ReservationStateError("This reservation has not started yet: cancel it instead (nothing to pay).")
    if now >= reservation.end or reservation.status not in Reservation.HOLDING:
        raise ReservationStateError(f"This reservation is {reservation.status} and holds no cards to release.")
    booked_end = reservation.end
    device_allocations_truncate(reservation_id=reservation.pk, end=now)
    reservation.end = now
    reservation.released_at = now
    reservation.save(update_fields=["end", "released_at", "updated_at"])
    was_active = reservation.status == Reservation.Status.ACTIVE
    params = {"booked_until": time_param(booked_end)}
    if by_operator:
        params["note"] = note
        code = ReasonCode.OPERATOR_RELEASED if was_active else ReasonCode.OPERATOR_RELEASED_BEFORE_ACTIVE
    else:
        code = ReasonCode.RELEASED_EARLY if was_active else ReasonCode.RELEASED_BEFORE_ACTIVE
    why = {"reason": note} if note and not by_operator else {"reason_code": code, "reason_params": params}
    # Never became active (provisioning had not finished): billing never started, so it is cancelled.
    status = Reservation.Status.COMPLETED if was_active else Reservation.Status.CANCELLED
    return reservation_set_status(reservation=reservation, status=status, actor=actor, **why)


EXTEND_UNHEALTHY_MESSAGE = (
    "{count} of these cards sit on a node that is not online or is flagged, or on a site that is not online, "
    "so the booking cannot be extended."
)


@transaction.atomic
def reservation_extend(*, reservation: Reservation, end: datetime, actor: User | None) -> Reservation:
    """Keep the same devices until `end`, under the same rules as a booking.

    The offer must still be active, its rentable period must cover the added time [old end, end),
    the whole new length must fit max_duration_hours, and every device must pass the health check
    (node online and not flagged, site online). Refused with BookingConflict (409) when the offer is
    withdrawn, the hardware is unhealthy or a device is taken meanwhile; ValidationError (400) when
    the new end breaks the offer's terms. Asking for the end it already has returns the reservation
    unchanged (a retried request), not an error.
    """
    # select_related + FOR UPDATE locks the offer row too: its terms cannot change under us.
    reservation = Reservation.objects.select_for_update().select_related("offer").get(pk=reservation.pk)
    if end == reservation.end:
        return reservation  # already extended to this end: an idempotent retry
    now = timezone.now()
    if reservation.status not in Reservation.HOLDING:
        raise ReservationStateError(f"A {reservation.status} reservation cannot be extended.")
    if now >= reservation.end:
        raise ReservationStateError("This reservation has already ended.")
    if end < reservation.end:
        raise ValidationError({"end": ["The new end must be after the current end (release early to end sooner)."]})
    offer = reservation.offer
    old_end = reservation.end
    if not offer.is_active:
        raise BookingConflict("This offer has been withdrawn, so the booking cannot be extended.", cards_free=0)
    errors = _offer_terms_errors(
        offer=offer, start=reservation.start, end=end, rentable_from=old_end, check_minimum=False
    )
    if errors:
        raise ValidationError({"end": [message for messages in errors.values() for message in messages]})
    unhealthy = reservation_devices_unhealthy(reservation_id=reservation.pk)
    if unhealthy:
        raise BookingConflict(EXTEND_UNHEALTHY_MESSAGE.format(count=unhealthy), cards_free=0)
    device_ids = sorted({a.device_id for a in device_allocations_for_reservation(reservation_id=reservation.pk)})
    if maintenance_overlaps(device_ids=device_ids, start=old_end, end=end):
        raise BookingConflict("These cards have maintenance planned before that time, so the booking cannot be extended.")
    try:
        device_allocations_create(device_ids=device_ids, start=old_end, end=end, reservation_id=reservation.pk)
    except AllocationConflict:
        raise BookingConflict("These cards are booked by someone else before that time, so the booking cannot be extended.") from None
    reservation.end = end
    reservation.save(update_fields=["end", "updated_at"])
    ReservationStatusChange.objects.create(
        reservation=reservation, from_status=reservation.status, to_status=reservation.status, actor=actor,
        reason_code=ReasonCode.EXTENDED, reason_params={"old_end": time_param(old_end), "new_end": time_param(end)},
    )
    return reservation


def reservations_advance(*, now: datetime | None = None) -> dict[str, int]:
    """Move reservations along with the clock (run by Celery beat; safe to run any number of times).

    The rules, applied in this order:

    * requested/provisioning whose `end` has passed (beat or the worker was down for the whole
      window) -> failed. They were never handed over, so nothing is billed; their devices are freed.
    * requested -> provisioning once the start is reached (start <= now < end).
    * provisioning -> active only if every allocated device passes the health check at that moment
      (node online and not flagged, site online: inventory.allocations.reservation_devices_unhealthy,
      one query per reservation). Otherwise -> failed and the devices are freed: billing starts only
      after the node passes its health check, never for a boot that failed.
    * active -> completed once the end is reached.

    Provisioning itself is a later issue: for now a healthy reservation is active as soon as it starts.
    """
    now = now or timezone.now()
    moved = {"activated": 0, "completed": 0, "failed": 0}
    pending = [Reservation.Status.REQUESTED, Reservation.Status.PROVISIONING]
    missed = Reservation.objects.filter(status__in=pending, end__lte=now).values_list("pk", flat=True)
    for reservation_id in list(missed):
        try:
            with transaction.atomic():
                reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
                if reservation.status not in pending or reservation.end > now:
                    continue  # moved (or extended) by someone else meanwhile
                device_allocations_release(reservation_id=reservation.pk)
                reservation_set_status(
                    reservation=reservation, status=Reservation.Status.FAILED, reason_code=ReasonCode.NEVER_HANDED_OVER
                )
                moved["failed"] += 1
        except ReservationStateError:
            continue
    due = Reservation.objects.filter(status__in=pending, start__lte=now, end__gt=now).values_list("pk", flat=True)
    for reservation_id in list(due):
        try:
            with transaction.atomic():
                reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
                if reservation.status == Reservation.Status.REQUESTED:
                    reservation = reservation_set_status(
                        reservation=reservation, status=Reservation.Status.PROVISIONING, reason_code=ReasonCode.START_REACHED
                    )
                if reservation.status != Reservation.Status.PROVISIONING:
                    continue
                unhealthy = reservation_devices_unhealthy(reservation_id=reservation.pk)
                if unhealthy:
                    device_allocations_release(reservation_id=reservation.pk)
                    reservation_set_status(
                        reservation=reservation, status=Reservation.Status.FAILED,
                        reason_code=ReasonCode.UNHEALTHY_AT_ACTIVATION,
                        reason_params={"count": unhealthy, "cards": reservation.card_count},
                    )
                    moved["failed"] += 1
                    continue
                reservation_set_status(
                    reservation=reservation, status=Reservation.Status.ACTIVE, reason_code=ReasonCode.HANDED_OVER
                )
                moved["activated"] += 1
        except ReservationStateError:
            continue  # moved by someone else meanwhile (a cancel, a failure): leave it be
    finished = Reservation.objects.filter(status=Reservation.Status.ACTIVE, end__lte=now).values_list("pk", flat=True)
    for reservation_id in list(finished):
        try:
            reservation_set_status(
                reservation=Reservation(pk=reservation_id), status=Reservation.Status.COMPLETED,
                reason_code=ReasonCode.PERIOD_ENDED,
            )
        except ReservationStateError:
            continue
        moved["completed"] += 1
    return moved
