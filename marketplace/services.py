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
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

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
from inventory.market_selectors import OfferBookingTerms, maintenance_overlaps, offer_lock_for_booking
from inventory.models import Device, DeviceAllocation, Node, NodeStatusChange, Offer, Site
from inventory.selectors import accelerator_models_for
from inventory.signals import CAPACITY_LOST_STATUSES
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_for_booking
from marketplace.models import Reservation, ReservationDowntime, ReservationSegment, ReservationStatusChange
from marketplace.notifications import reservation_status_notify
from marketplace.provisioning.assignments import assignments_stop
from marketplace.reasons import REASON_TEMPLATES, ReasonCode, money_param, time_param
from marketplace.windows import offer_terms_breach, window_errors

# A sane ceiling for one booking (the largest clusters hold a few thousand cards).
MAX_CARDS_PER_BOOKING = 4096
# How often a booking re-picks devices after losing a race for them before giving up with 409.
BOOKING_ATTEMPTS = 5

CONFLICT_MESSAGE = gettext_lazy("Those cards were just booked by someone else - pick another time, fewer cards or another offer.")


class BookingConflict(Exception):
    """The booking lost to the current state: cards that were free when it picked them were taken by a
    concurrent writer (a real race), or the offer or its hardware stopped being bookable. Maps to 409."""

    def __init__(self, message: str = CONFLICT_MESSAGE, *, cards_free: int | None = None):
        message = str(message)  # a lazy default is translated now, in the language of the request that lost
        super().__init__(message)
        self.message = message
        self.cards_free = cards_free


class InsufficientCapacity(BookingConflict):
    """Fewer cards are free in the window than asked for - no race, there are just not enough. Maps to 409
    with its own code and the free count, so the buyer can ask for fewer instead of retrying."""

    def __init__(self, *, cards_free: int, cards_asked: int):
        if cards_free:
            message = _("Only %(free)s of the %(asked)s cards are free in that window - "
                        "book %(free)s or fewer, pick another time or another offer.") % {"free": cards_free, "asked": cards_asked}
        else:
            message = _("None of the %(asked)s cards you asked for is free in that window - pick another time or another offer.") % {
                "asked": cards_asked}
        super().__init__(message, cards_free=cards_free)
        self.cards_asked = cards_asked


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request. Maps to 422."""


def _status(reservation: Reservation) -> dict:
    """The reservation's status as a message parameter, in the reader's words ("active" / "运行中")."""
    return {"status": str(reservation.get_status_display()).lower()}


class ReservationStateError(Exception):
    """The reservation's status or timing does not allow this action. Maps to 409."""


def _fingerprint(
    *, offer_id: int, card_count: int, start: datetime, end: datetime, launch_template: str, alternatives: list[int] | None = None
) -> str:
    """SHA-256 of the request. Times are normalized to UTC first: the same instant sent as +08:00
    and as Z is the same request (a retry), not a reused key."""
    request = {
        "offer": offer_id,
        "cards": card_count,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "launch_template": launch_template,
    }
    if alternatives:  # only when given, so the fingerprints of bookings without them stay what they were
        request["accepted_alternatives"] = sorted(alternatives)
    body = json.dumps(request, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


MAX_ACCEPTED_ALTERNATIVES = 20


def _accepted_alternatives(names: list[str], *, booked_model_id: int) -> list[int]:
    """Catalog model ids for the names (or slugs) given, the booked model left out; unknown -> ValidationError."""
    if len(names) > MAX_ACCEPTED_ALTERNATIVES:
        raise ValidationError({"accepted_alternatives": [_("At most %(count)s models.") % {"count": MAX_ACCEPTED_ALTERNATIVES}]})
    ids, unknown = set(), []
    for name in names:
        found = list(accelerator_models_for(str(name)).values_list("pk", flat=True)[:1]) if str(name).isprintable() else []
        if found:
            ids.add(found[0])
        else:
            unknown.append(str(name)[:80])
    if unknown:
        raise ValidationError({"accepted_alternatives": [
            _('Not a model of the catalog: %(names)s. Give model names as the quote shows them (e.g. "A100 SXM4 80GB").')
            % {"names": ", ".join(unknown)}
        ]})
    ids.discard(booked_model_id)
    return sorted(ids)


def _validate_booking(*, card_count: int, start: datetime, end: datetime, now: datetime) -> None:
    errors = window_errors(start=start, end=end, now=now)
    if card_count is None or card_count < 1:
        errors["card_count"] = [_("Book at least one card.")]
    elif card_count > MAX_CARDS_PER_BOOKING:
        errors["card_count"] = [_("At most %(count)s cards per booking.") % {"count": MAX_CARDS_PER_BOOKING}]
    # The offer's own terms (active, duration bounds, rentable period) are checked in
    # _reservation_book, on the row read under the booking's lock: never on the caller's copy.
    if errors:
        raise ValidationError(errors)


def _offer_terms_errors(
    *, offer: Offer | OfferBookingTerms, start: datetime, end: datetime, rentable_from: datetime | None = None,
    check_minimum: bool = True,
) -> dict[str, list[str]]:
    """marketplace.windows' rule for the offer's terms, as field errors. One rule for booking and extending."""
    breach = offer_terms_breach(
        min_duration_hours=offer.min_duration_hours, max_duration_hours=offer.max_duration_hours,
        rentable_period=offer.rentable_period, start=start, end=end, rentable_from=rentable_from,
        check_minimum=check_minimum,
    )
    errors: dict[str, list[str]] = {}
    if breach.duration:
        errors["end"] = [_("This offer rents for %(min)s to %(max)s hours in one booking.") % {"min": offer.min_duration_hours, "max": offer.max_duration_hours}]
    if breach.rentable_period:
        errors["start"] = [_("The capacity is not rentable for that whole period.")]
    return errors


def _existing_for_key(*, organization: Organization, key: str, fingerprint: str) -> Reservation | None:
    existing = Reservation.objects.filter(buyer=organization, idempotency_key=key).first()
    if existing is not None and existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            _("This Idempotency-Key was already used for a different booking; use a new key for a new booking.")
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
    accepted_alternatives: list[str] | None = None,
) -> tuple[Reservation, bool]:
    """Book `card_count` devices of `offer` for [start, end) at today's price, to run `launch_template`.

    `accepted_alternatives`: catalog model names (or slugs) the buyer accepts if failover finds none of
    the booked model free (marketplace.failover); an unknown one is a ValidationError on the field.

    `launch_template` is a template's slug; None means marketplace.launch.DEFAULT_LAUNCH_TEMPLATE
    ("bare-ssh"). The offer's software stack must have an image for it (ValidationError on
    `launch_template` otherwise).

    Returns (reservation, created). With an idempotency key, a retry of the same request returns
    the first reservation (created=False); the same key with a different request raises
    IdempotencyKeyReused. Raises BookingConflict (nothing written) when the cards are not free,
    ValidationError for bad input.
    """
    if not organization.is_buyer:
        raise ValidationError({"organization": [_("Only buyer organizations can book.")]})
    key = (idempotency_key or "").strip()
    if len(key) > 200:
        raise ValidationError({"idempotency_key": [_("At most 200 characters.")]})
    if not key.isprintable():
        # A NUL byte cannot be stored (and control characters have no business in a key): refuse, don't crash.
        raise ValidationError({"idempotency_key": [_("Use printable characters only (a UUID is a good key).")]})
    template_slug = launch_template or DEFAULT_LAUNCH_TEMPLATE
    alternatives = _accepted_alternatives(accepted_alternatives or [], booked_model_id=offer.accelerator_model_id)
    fingerprint = _fingerprint(
        offer_id=offer.pk, card_count=card_count, start=start, end=end, launch_template=template_slug, alternatives=alternatives
    )
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
            start=start, end=end, key=key, fingerprint=fingerprint, launch_template=template, alternatives=alternatives,
        )
    except IntegrityError as error:
        # A concurrent request with the same key committed first: answer with its reservation.
        if key and "reservation_idempotency_key_unique" in str(error):
            existing = _existing_for_key(organization=organization, key=key, fingerprint=fingerprint)
            if existing is not None:
                return existing, False
        raise
    if reservation.start <= timezone.now():
        # It starts now: provision right after the commit instead of waiting for beat. A broker that is
        # down does not fail the booking (logged; reservations_sweep re-drives it).
        from marketplace.provisioning.services import reservation_provision_after_commit

        reservation_provision_after_commit(reservation_id=reservation.pk)
    return reservation, True


@transaction.atomic
def _reservation_book(
    *, organization, created_by, offer: Offer, card_count: int, start, end, key: str, fingerprint: str, launch_template,
    alternatives: list[int] | None = None,
) -> Reservation:
    # Four statements: lock and read the offer (price and terms), insert the reservation, pick and
    # allocate its devices, write the audit row (plus BEGIN / COMMIT). Bookings of one offer queue at the lock,
    # so each picks devices after the previous one committed. The exclusion constraint stays the
    # real guarantee: maintenance windows and extensions do not take this lock, and devices they
    # took meanwhile are skipped and replaced below.
    terms = offer_lock_for_booking(offer_id=offer.pk)
    if terms is None:
        raise Offer.DoesNotExist("This offer does not exist.")
    if not terms.is_active:
        raise ValidationError({"offer": [_("This offer has been withdrawn.")]})
    # The duration bounds and rentable period of the locked row (read by the locking statement: the
    # committed version nobody can change before we commit), not of the caller's possibly stale copy.
    terms_errors = _offer_terms_errors(offer=terms, start=start, end=end)
    if terms_errors:
        raise ValidationError(terms_errors)
    if terms.site_lifecycle != Site.Lifecycle.ONLINE:
        raise BookingConflict(_("This site is not online, so its cards cannot be booked."), cards_free=0)
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
    if alternatives:
        reservation.accepted_alternatives.set(alternatives)
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
    at: datetime | None = None,
) -> Reservation:
    """Move a reservation to `status`: locks the row, checks TRANSITIONS, writes the audit row, and
    keeps the service periods.

    `at` is the instant the move happened as the caller observed it (the health check that passed,
    the agent's report, the end of the period, the release), never the wall clock of this write. It
    is required when the move starts or ends service: turning active records `active_from` (the
    first time) and opens a segment per node for the devices not yet in one; leaving active or
    migrating for completed / failed / cancelled closes the open segments and records `active_to`.

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
    opens = status == Reservation.Status.ACTIVE
    closes = status in _SERVICE_ENDED and reservation.status in _IN_SERVICE
    if (opens or closes) and at is None:
        raise ValueError(f"Moving a reservation from {reservation.status} to {status} needs `at`, the instant it happened.")
    change = ReservationStatusChange.objects.create(
        reservation=reservation, from_status=reservation.status, to_status=status, actor=actor, reason=reason[:300],
        reason_code=reason_code, reason_params=reason_params or {},
    )
    changed = ["status", "updated_at"]
    if opens:
        if reservation.active_from is None:
            reservation.active_from = at
            changed.append("active_from")
        _segments_open(reservation=reservation, at=at)
    if closes:
        _segments_close(reservation_id=reservation.pk, at=at)
        # An outage still open when service ends (a move that never finished) ends with it.
        ReservationDowntime.objects.filter(reservation_id=reservation.pk, ended_at__isnull=True).update(
            ended_at=Greatest(F("started_at"), Value(at))
        )
        reservation.active_to = at
        changed.append("active_to")
    if status in _SERVICE_ENDED:
        # Every path that ends a reservation (release, cancel, period end, failure) reaches its nodes:
        # their workloads get desired stop here, whatever the caller.
        assignments_stop(reservation_id=reservation.pk, at=at or timezone.now(), reason=f"the reservation is {status}")
    reservation.status = status
    reservation.save(update_fields=changed)
    # In this transaction: the notification rows roll back with the move; emails leave on commit.
    reservation_status_notify(reservation=reservation, change=change)
    return reservation


# Statuses in which the buyer is being served (segments may be open), and those that end service.
_IN_SERVICE = frozenset({Reservation.Status.ACTIVE, Reservation.Status.MIGRATING})
_SERVICE_ENDED = frozenset({Reservation.Status.COMPLETED, Reservation.Status.FAILED, Reservation.Status.CANCELLED})


def _segments_open(*, reservation: Reservation, at: datetime, device_ids: list[int] | None = None) -> list[ReservationSegment]:
    """Open a segment from `at` per node for the reservation's devices running at `at` (only
    `device_ids`, if given) that no open segment covers yet. A node that already has an open segment
    gets it closed at `at` and reopened with the union, so segments of one node never overlap."""
    rows = DeviceAllocation.objects.filter(
        reservation_id=reservation.pk, is_active=True, period__endswith__gt=at
    ).values_list("device_id", "node_id", "cluster__site__owner_id")
    if device_ids is not None:
        rows = rows.filter(device_id__in=device_ids)
    open_segments = {segment.node_id: segment for segment in ReservationSegment.objects.filter(
        reservation_id=reservation.pk, ended_at__isnull=True
    )}
    covered = {device_id for segment in open_segments.values() for device_id in segment.device_ids}
    by_node: dict[int, tuple[int, set[int]]] = {}
    for device_id, node_id, provider_id in rows:
        if device_id not in covered:
            by_node.setdefault(node_id, (provider_id, set()))[1].add(device_id)
    created = []
    for node_id, (provider_id, devices) in sorted(by_node.items()):
        previous = open_segments.get(node_id)
        if previous is not None:
            _segments_close(reservation_id=reservation.pk, at=at, node_ids=[node_id])
            devices |= set(previous.device_ids)
        created.append(ReservationSegment.objects.create(
            reservation=reservation, node_id=node_id, device_ids=sorted(devices), provider_id=provider_id,
            offer_id=reservation.offer_id, started_at=at,
            price_per_card_hour_minor=reservation.price_per_card_hour_minor, currency=reservation.currency,
        ))
    return created


def _segments_close(*, reservation_id: int, at: datetime, node_ids: list[int] | None = None) -> int:
    segments = ReservationSegment.objects.filter(reservation_id=reservation_id, ended_at__isnull=True)
    if node_ids is not None:
        segments = segments.filter(node_id__in=node_ids)
    # A segment opened after `at` (a late report) ends where it began: zero time, never negative.
    return segments.update(ended_at=Greatest(F("started_at"), Value(at)))


def _operator_note(*, by_operator: bool, reason: str) -> str:
    """An operator acting on a buyer's reservation must say why (it is shown in the buyer's timeline)."""
    note = (reason or "").strip()
    if by_operator and not note:
        raise ValidationError({"reason": [_("Say why: the buyer sees this note in the reservation's timeline.")]})
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
        raise ReservationStateError(_("This reservation has started: release it early instead of cancelling."))
    if reservation.status not in (Reservation.Status.REQUESTED, Reservation.Status.PROVISIONING):
        raise ReservationStateError(_("A reservation that is %(status)s cannot be cancelled.") % _status(reservation))
    now = timezone.now()
    device_allocations_release(reservation_id=reservation.pk, at=now, reason=DeviceAllocation.ReleaseReason.CANCELLED)
    if by_operator:
        why = {"reason_code": ReasonCode.OPERATOR_CANCELLED, "reason_params": {"note": note}}
    else:
        why = {"reason": note} if note else {"reason_code": ReasonCode.CANCELLED_BY_BUYER}
    return reservation_set_status(reservation=reservation, status=Reservation.Status.CANCELLED, actor=actor, at=now, **why)


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
        raise ReservationStateError(_("This reservation has not started yet: cancel it instead (nothing to pay)."))
    if now >= reservation.end or reservation.status not in Reservation.HOLDING:
        raise ReservationStateError(_("This reservation is %(status)s and holds no cards to release.") % _status(reservation))
    booked_end = reservation.end
    device_allocations_truncate(reservation_id=reservation.pk, end=now, reason=DeviceAllocation.ReleaseReason.RELEASED_EARLY)
    reservation.end = now
    reservation.released_at = now
    reservation.save(update_fields=["end", "released_at", "updated_at"])
    was_active = reservation.status in _IN_SERVICE
    params = {"booked_until": time_param(booked_end)}
    if by_operator:
        params["note"] = note
        code = ReasonCode.OPERATOR_RELEASED if was_active else ReasonCode.OPERATOR_RELEASED_BEFORE_ACTIVE
    else:
        code = ReasonCode.RELEASED_EARLY if was_active else ReasonCode.RELEASED_BEFORE_ACTIVE
    why = {"reason": note} if note and not by_operator else {"reason_code": code, "reason_params": params}
    # Never became active (provisioning had not finished): billing never started, so it is cancelled.
    status = Reservation.Status.COMPLETED if was_active else Reservation.Status.CANCELLED
    return reservation_set_status(reservation=reservation, status=status, actor=actor, at=now, **why)


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
        raise ReservationStateError(_("A reservation that is %(status)s cannot be extended.") % _status(reservation))
    if now >= reservation.end:
        raise ReservationStateError(_("This reservation has already ended."))
    if end < reservation.end:
        raise ValidationError({"end": [_("The new end must be after the current end (release early to end sooner).")]})
    offer = reservation.offer
    old_end = reservation.end
    if not offer.is_active:
        raise BookingConflict(_("This offer has been withdrawn, so the booking cannot be extended."), cards_free=0)
    errors = _offer_terms_errors(
        offer=offer, start=reservation.start, end=end, rentable_from=old_end, check_minimum=False
    )
    if errors:
        raise ValidationError({"end": [message for messages in errors.values() for message in messages]})
    unhealthy = reservation_devices_unhealthy(reservation_id=reservation.pk, at=now)
    if unhealthy:
        raise BookingConflict(EXTEND_UNHEALTHY_MESSAGE.format(count=unhealthy), cards_free=0)
    # The devices holding it at its current end (not those it was moved away from).
    device_ids = sorted({
        a.device_id for a in device_allocations_for_reservation(reservation_id=reservation.pk).filter(period__endswith=old_end)
    })
    if maintenance_overlaps(device_ids=device_ids, start=old_end, end=end):
        raise BookingConflict(_("These cards have maintenance planned before that time, so the booking cannot be extended."))
    try:
        device_allocations_create(device_ids=device_ids, start=old_end, end=end, reservation_id=reservation.pk)
    except AllocationConflict:
        raise BookingConflict(_("These cards are booked by someone else before that time, so the booking cannot be extended.")) from None
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
    * requested whose start is reached (start <= now < end): marketplace.reservation_provision is
      enqueued (after commit) - it moves the reservation to provisioning and publishes the workload to
      its nodes. A reservation turns active ONLY when its nodes report the workload running
      (marketplace.provisioning.services.assignment_report), never on this timer.
    * active (or migrating) -> completed once the end is reached; service ends at `end`.
    """
    now = now or timezone.now()
    moved = {"started": 0, "completed": 0, "failed": 0}
    pending = [Reservation.Status.REQUESTED, Reservation.Status.PROVISIONING]
    missed = Reservation.objects.filter(status__in=pending, end__lte=now).values_list("pk", flat=True)
    for reservation_id in list(missed):
        try:
            with transaction.atomic():
                reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
                if reservation.status not in pending or reservation.end > now:
                    continue  # moved (or extended) by someone else meanwhile
                device_allocations_release(reservation_id=reservation.pk, at=now, reason=DeviceAllocation.ReleaseReason.FAILED)
                reservation_set_status(
                    reservation=reservation, status=Reservation.Status.FAILED, reason_code=ReasonCode.NEVER_HANDED_OVER, at=now
                )
                moved["failed"] += 1
        except ReservationStateError:
            continue
    due = Reservation.objects.filter(status=Reservation.Status.REQUESTED, start__lte=now, end__gt=now).values_list("pk", flat=True)
    if due:
        from marketplace.provisioning.services import reservation_provision_after_commit

        for reservation_id in list(due):
            reservation_provision_after_commit(reservation_id=reservation_id)
            moved["started"] += 1
    finished = Reservation.objects.filter(status__in=_IN_SERVICE, end__lte=now).values_list("pk", "end")
    for reservation_id, end in list(finished):
        try:
            # Service ended at the end of the period, however late beat noticed it. A reservation still
            # migrating at its end completes too (its move's gap was never billed).
            reservation_set_status(
                reservation=Reservation(pk=reservation_id), status=Reservation.Status.COMPLETED,
                reason_code=ReasonCode.PERIOD_ENDED, at=end,
            )
        except ReservationStateError:
            continue
        moved["completed"] += 1
    return moved


REHOME_CONFLICT_MESSAGE = "Some of the target devices were just booked by someone else; nothing was moved."


@transaction.atomic
def reservation_rehome(
    *,
    reservation: Reservation,
    to_device_ids: list[int],
    at: datetime,
    from_device_ids: list[int] | None = None,
    offer: Offer | None = None,
    actor: User | None = None,
) -> Reservation:
    """Move a reservation (or part of it) to other devices from the instant `at`, keeping its history.

    `from_device_ids` (default: every device it holds at `at`) leave it: their allocations are truncated
    at `at` (inventory keeps the booked period, `released_at` and the reason) and their open segments
    close at `at`. `to_device_ids` (as many) are allocated from `at` to the end - possibly in another
    cluster, offer or provider: then give the target `offer` (the price stays the one locked at
    booking). The exclusion constraint guards them: when one was booked meanwhile, BookingConflict is
    raised and nothing changed. An active reservation turns migrating; the new devices' segments open
    when the caller reports them healthy, through reservation_set_status(status=active, at=<that instant>)
    - the gap in between is not billed. Failover will call this; it decides where to go.
    """
    reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
    if reservation.status not in Reservation.HOLDING:
        raise ReservationStateError(f"A {reservation.status} reservation holds no devices to move.")
    if not reservation.start <= at < reservation.end:
        raise ValidationError({"at": ["Move a reservation only within its period."]})
    held = sorted(set(
        DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True, period__endswith__gt=at)
        .values_list("device_id", flat=True)
    ))
    leaving = sorted(set(held if from_device_ids is None else from_device_ids))
    arriving = sorted(set(to_device_ids))
    if set(leaving) - set(held):
        raise ValidationError({"from_device_ids": ["Only devices the reservation holds at that instant can leave it."]})
    if len(arriving) != len(leaving) or not arriving:
        raise ValidationError({"to_device_ids": [f"Give {len(leaving)} devices to move to."]})
    if set(arriving) & set(held):
        raise ValidationError({"to_device_ids": ["These devices already serve this reservation."]})
    target = offer or reservation.offer
    if target.pk != reservation.offer_id and len(leaving) != len(held):
        raise ValidationError({"offer": ["Only a whole reservation moves to another offer."]})
    fitting = Device.objects.filter(
        pk__in=arriving, node__cluster_id=target.cluster_id, node__accelerator_model_id=target.accelerator_model_id
    ).count()
    if fitting != len(arriving):
        raise ValidationError({"to_device_ids": ["Every target device must belong to the target offer's cluster and model."]})
    leaving_nodes = sorted(set(
        DeviceAllocation.objects.filter(reservation_id=reservation.pk, device_id__in=leaving).values_list("node_id", flat=True)
    ))
    device_allocations_truncate(
        reservation_id=reservation.pk, end=at, reason=DeviceAllocation.ReleaseReason.REHOMED, device_ids=leaving
    )
    try:
        device_allocations_create(device_ids=arriving, start=at, end=reservation.end, reservation_id=reservation.pk)
    except AllocationConflict:
        raise BookingConflict(REHOME_CONFLICT_MESSAGE, cards_free=0) from None
    if target.pk != reservation.offer_id:
        reservation.offer_id, reservation.cluster_id = target.pk, target.cluster_id
        reservation.accelerator_model_id = target.accelerator_model_id
        reservation.save(update_fields=["offer", "cluster", "accelerator_model", "updated_at"])
    staying = sorted(set(held) - set(leaving))
    staying_nodes = set(Device.objects.filter(pk__in=staying).values_list("node_id", flat=True))
    # A node left entirely stops the workload; new nodes are published by marketplace.provisioning.
    assignments_stop(reservation_id=reservation.pk, at=at, reason="moved to other devices",
                     node_ids=[node_id for node_id in leaving_nodes if node_id not in staying_nodes])
    if reservation.status in _IN_SERVICE:
        _segments_close(reservation_id=reservation.pk, at=at, node_ids=leaving_nodes)
        # The devices that stay on those nodes keep serving: a fresh segment from `at`.
        if staying:
            _segments_open(reservation=reservation, at=at, device_ids=staying)
    why = {"reason_code": ReasonCode.REHOMED, "reason_params": {"cards": len(arriving), "at": time_param(at)}}
    if reservation.status == Reservation.Status.ACTIVE:
        return reservation_set_status(reservation=reservation, status=Reservation.Status.MIGRATING, actor=actor, at=at, **why)
    ReservationStatusChange.objects.create(
        reservation=reservation, from_status=reservation.status, to_status=reservation.status, actor=actor, **why
    )
    return reservation


def reservations_note_capacity_lost(*, node_ids: list[int], now: datetime | None = None) -> int:
    """Write a timeline event (reason capacity_lost) on each reservation that holds cards on these nodes
    and is active or upcoming (requested, provisioning, active, migrating, not over). Marks nothing
    else: failover (marketplace.failover.reservations_failover) acts on the same news right after.

    Idempotent: one event per reservation and node status change (the node's latest move to offline,
    unhealthy or retired), so a redelivered task writes nothing twice. Returns the events written.
    """
    now = now or timezone.now()
    written = 0
    for node in Node.objects.filter(pk__in=node_ids).order_by("pk"):
        change = (
            NodeStatusChange.objects.filter(node=node, to_status__in=CAPACITY_LOST_STATUSES).order_by("-created_at", "-id").first()
        )
        if change is None or node.status not in CAPACITY_LOST_STATUSES:
            continue  # back online already (or never lost): nothing to say
        cards_by_reservation: dict[int, int] = {}
        for reservation_id in DeviceAllocation.objects.filter(
            node_id=node.pk, is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION, period__endswith__gt=now
        ).values_list("reservation_id", flat=True):
            cards_by_reservation[reservation_id] = cards_by_reservation.get(reservation_id, 0) + 1
        affected = Reservation.objects.filter(pk__in=cards_by_reservation, status__in=Reservation.HOLDING, end__gt=now)
        for reservation in affected.order_by("pk"):
            with transaction.atomic():
                reservation = Reservation.objects.select_for_update().get(pk=reservation.pk)
                if reservation.status_changes.filter(
                    reason_code=ReasonCode.CAPACITY_LOST, reason_params__node_change=change.pk
                ).exists():
                    continue
                ReservationStatusChange.objects.create(
                    reservation=reservation, from_status=reservation.status, to_status=reservation.status,
                    reason_code=ReasonCode.CAPACITY_LOST,
                    reason_params={
                        "cards": cards_by_reservation[reservation.pk], "node": node.hostname, "node_status": change.to_status,
                        "at": time_param(change.created_at), "node_change": change.pk,
                    },
                )
                written += 1
    return written
