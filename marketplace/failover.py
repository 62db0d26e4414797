"""Failover: when a node's cards stop being usable, move the reservations on it to equivalent free cards.

Inventory announces the loss (inventory.signals.capacity_lost, after commit: the stale sweep made the
node unhealthy, an operator marked it failed, a provider took it offline or into maintenance);
marketplace.receivers enqueues marketplace.reservations_on_capacity_lost, which calls
reservations_failover here. For each reservation holding cards on the node (requested, provisioning,
active or migrating, not over), under the reservation's row lock:

1. Where to go, first fit wins:
   a. the same offer (same model, same cluster): only the failed node's share moves - a multi-node
      reservation keeps its healthy nodes;
   b. another offer of the same model in the same national hub (maybe another provider): the whole
      reservation moves (one reservation = one offer = one fabric);
   c. an accepted alternative model (Reservation.accepted_alternatives, chosen at booking) in the
      same cluster, then in the same hub, whose software stack runs the reservation's workload: the
      whole reservation moves, the same number of cards.
   Free cards are picked by the booking path's rules and locks (inventory.market_selectors:
   offer_lock_for_booking, then free_device_ids_for_booking for [at, end)). The buyer keeps the price
   locked at booking, whichever offer serves it.
2. The move is reservation_rehome(..., at=<the node's last heartbeat>): the failed cards' allocations
   and segments end there, so the silent time is never billed; an active reservation turns migrating.
   A ReservationDowntime opens at that instant (in-service reservations only) and closes when the new
   cards report healthy (reservation_downtime_close, called by provisioning) or the reservation ends.
   Then _provision_after_rehome publishes the new cards to their agents.
3. Nothing equivalent free:
   - an active or migrating reservation is ended: COMPLETED at the last heartbeat (not FAILED: in this
     market "failed" bills nothing, yet the buyer was served until the node fell silent; completed with
     its segments closed at the last heartbeat bills exactly that), its cards freed, reason
     failover_no_capacity on its timeline (the buyer's page), and a downtime record from the last
     heartbeat to the booked end (the time the buyer lost, for SLA credits);
   - an upcoming one (requested or provisioning) is left where it is with a failover_not_moved note:
     the node may be back before the start, and if not, activation's health check fails it with
     nothing to pay. A later capacity_lost (another node change) tries again.
4. The node gets one reliability event "failover" (inventory.reliability) when work in service had to
   leave it, with the node change's cause (maintenance is not counted against the provider).

Idempotent: a reservation that no longer holds cards on the node, or is over, is skipped; the notes,
downtime and reliability rows are unique per failure. So a redelivered task moves nothing twice.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Case, F, IntegerField, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from inventory.allocations import device_allocations_truncate
from inventory.market_selectors import free_device_ids_for_booking, offer_lock_for_booking
from inventory.models import DeviceAllocation, Node, NodeStatusChange, Offer, ReliabilityEvent, Site
from inventory.reliability import node_reliability_record
from inventory.signals import CAPACITY_LOST_STATUSES
from marketplace.models import Reservation, ReservationDowntime, ReservationStatusChange
from marketplace.reasons import ReasonCode, time_param
from marketplace.services import BookingConflict, reservation_rehome, reservation_set_status
from marketplace.windows import offer_terms_breach

logger = logging.getLogger(__name__)

IN_SERVICE = frozenset({Reservation.Status.ACTIVE, Reservation.Status.MIGRATING})
UPCOMING = frozenset({Reservation.Status.REQUESTED, Reservation.Status.PROVISIONING})
# A pick that loses a race (a maintenance window or an extension took a card meanwhile) is retried.
PICK_ATTEMPTS = 3


def _provision_after_rehome(reservation_id: int) -> None:
    """Publish the moved reservation's new cards to their node agents (the provision task, after commit;
    the sweeper re-drives it if the broker is down). The reservation stays migrating until they report
    healthy (marketplace.provisioning)."""
    from marketplace.provisioning.services import reservation_provision_after_commit  # it imports failover lazily

    reservation_provision_after_commit(reservation_id=reservation_id)


def reservation_downtime_close(*, reservation: Reservation, at: datetime) -> int:
    """The reservation is served again (its new cards reported healthy) or it ended: close its open
    downtime records at `at` (never before they began). Idempotent. Returns the records closed."""
    return ReservationDowntime.objects.filter(reservation_id=reservation.pk, ended_at__isnull=True).update(
        ended_at=Greatest(F("started_at"), Value(at))
    )


@dataclass(frozen=True)
class NodeFailure:
    node: Node
    change: NodeStatusChange | None  # None: the node is fine, one reservation's workload died on it
    at: datetime  # the node's last heartbeat (or the status change, for a node never heard from)
    cause: str  # a ReliabilityEvent.Cause value

    @property
    def workload_only(self) -> bool:
        return self.change is None

    @property
    def change_id(self) -> int | None:
        return self.change.pk if self.change is not None else None


def node_failure(*, node: Node) -> NodeFailure | None:
    """Why and since when the node's cards are lost, from its latest move to a lost status. None if
    the node is usable again (or was never lost)."""
    if node.status not in CAPACITY_LOST_STATUSES:
        return None
    change = NodeStatusChange.objects.filter(node=node, to_status__in=CAPACITY_LOST_STATUSES).order_by("-created_at", "-id").first()
    if change is None:
        return None
    if node.status == Node.Status.MAINTENANCE:
        cause = ReliabilityEvent.Cause.MAINTENANCE
    else:
        cause = change.cause if change.cause in ReliabilityEvent.Cause.values else ReliabilityEvent.Cause.HOST_FAULT
    at = node.last_heartbeat_at or change.created_at
    return NodeFailure(node=node, change=change, at=at, cause=cause)


@dataclass(frozen=True)
class Target:
    offer_id: int
    device_ids: list[int]
    whole: bool  # the whole reservation moves (another offer), not just the failed node's share
    tier: str  # "same_cluster", "same_hub", "alternative"


def _pick(*, offer: Offer, reservation: Reservation, at: datetime, count: int) -> list[int] | None:
    """`count` free cards of `offer` for [at, end), under the offer's booking lock; None if short."""
    terms = offer_lock_for_booking(offer_id=offer.pk)
    if terms is None or terms.site_lifecycle != Site.Lifecycle.ONLINE:
        return None
    # A withdrawn offer takes no new bookings, but the buyer's own contract with it stands.
    if not terms.is_active and offer.pk != reservation.offer_id:
        return None
    if offer.pk != reservation.offer_id and offer_terms_breach(
        min_duration_hours=0, max_duration_hours=10**9, rentable_period=offer.rentable_period, start=at, end=reservation.end
    ).rentable_period:
        return None
    picked = free_device_ids_for_booking(
        cluster_id=terms.cluster_id, accelerator_model_id=terms.accelerator_model_id, start=at, end=reservation.end, limit=count
    )
    return picked if len(picked) == count else None


def _candidate_offers(*, reservation: Reservation):
    """Other offers, in failover order: same model in the same hub, then accepted alternative models
    in the same cluster, then in the same hub. Within a tier, the most reliable provider first."""
    hub_id = reservation.cluster.site.province.hub_id if reservation.cluster.site.province_id else None
    base = Offer.objects.filter(is_active=True, cluster__site__lifecycle=Site.Lifecycle.ONLINE).exclude(pk=reservation.offer_id)
    order = [F("cluster__site__owner__reliability__score").desc(nulls_first=True), "id"]
    if hub_id is not None:
        for offer in base.filter(accelerator_model_id=reservation.accelerator_model_id, cluster__site__province__hub_id=hub_id).order_by(*order):
            yield offer, "same_hub"
    alternatives = list(reservation.accepted_alternatives.exclude(pk=reservation.accelerator_model_id).values_list("pk", flat=True))
    if not alternatives:
        return
    template = reservation.launch_template
    stacks = {image.stack for image in template.images.all()} if template is not None else None
    nearby = base.filter(accelerator_model_id__in=alternatives).select_related("accelerator_model")
    if hub_id is not None:
        nearby = nearby.filter(cluster__site__province__hub_id=hub_id) | nearby.filter(cluster_id=reservation.cluster_id)
    else:
        nearby = nearby.filter(cluster_id=reservation.cluster_id)
    same_cluster_first = Case(When(cluster_id=reservation.cluster_id, then=Value(0)), default=Value(1), output_field=IntegerField())
    for offer in nearby.order_by(same_cluster_first, *order):
        if stacks is None or offer.accelerator_model.stack in stacks:
            yield offer, "alternative"


def _find_target(*, reservation: Reservation, at: datetime, share: int, held: int) -> Target | None:
    same = _pick(offer=reservation.offer, reservation=reservation, at=at, count=share)
    if same is not None:
        return Target(offer_id=reservation.offer_id, device_ids=same, whole=False, tier="same_cluster")
    for offer, tier in _candidate_offers(reservation=reservation):
        picked = _pick(offer=offer, reservation=reservation, at=at, count=held)
        if picked is not None:
            return Target(offer_id=offer.pk, device_ids=picked, whole=True, tier=tier)
    return None


def _held_at(reservation: Reservation, at: datetime):
    return DeviceAllocation.objects.filter(reservation_id=reservation.pk, is_active=True, period__endswith__gt=at)


def reservation_failover(*, reservation_id: int, failure: NodeFailure, now: datetime | None = None) -> str:
    """Fail one reservation over from `failure.node` (see the module docstring). Returns what happened:
    "moved", "ended", "noted" or "skipped" (nothing to do: not on the node any more, over, or noted)."""
    now = now or timezone.now()
    for _attempt in range(PICK_ATTEMPTS):
        try:
            return _reservation_failover(reservation_id=reservation_id, failure=failure, now=now)
        except BookingConflict:
            continue  # a card picked was taken meanwhile (outside the offer lock): pick again
    logger.warning("failover of reservation %s lost the race for cards %d times; left for the next run", reservation_id, PICK_ATTEMPTS)
    return "skipped"


@transaction.atomic
def _reservation_failover(*, reservation_id: int, failure: NodeFailure, now: datetime) -> str:
    reservation = (
        Reservation.objects.select_for_update(of=("self",))
        .select_related("offer", "cluster__site__province", "launch_template")
        .get(pk=reservation_id)
    )
    if reservation.status not in Reservation.HOLDING or reservation.end <= now:
        return "skipped"
    node = failure.node
    # Never before the reservation started (nor before it was handed over): no service is moved back in time.
    at = max(failure.at, reservation.start, reservation.active_from or reservation.start)
    if at >= reservation.end:
        return "skipped"
    on_node = _held_at(reservation, at).filter(node_id=node.pk)
    if not on_node.exists():
        return "skipped"  # moved already (a redelivered task), or never on this node
    # Nor before the reservation arrived on this node (a move onto a node that was already going quiet):
    # the cards it left earlier are not moved a second time.
    arrived = min(row.period.lower for row in on_node.only("period"))
    at = max(at, arrived)
    if at >= reservation.end:
        return "skipped"
    leaving = sorted(_held_at(reservation, at).filter(node_id=node.pk).values_list("device_id", flat=True))
    held = _held_at(reservation, at).values("device_id").distinct().count()
    target = _find_target(reservation=reservation, at=at, share=len(leaving), held=held)
    in_service = reservation.status in IN_SERVICE
    if target is None:
        if in_service:
            _end_for_lack_of_capacity(reservation=reservation, failure=failure, at=at, cards=len(leaving))
            return "ended"
        return _note_not_moved(reservation=reservation, failure=failure, cards=len(leaving))
    offer = Offer.objects.select_related("cluster__site", "accelerator_model").get(pk=target.offer_id)
    rehomed = reservation_rehome(
        reservation=reservation, to_device_ids=target.device_ids, at=at,
        from_device_ids=None if target.whole else leaving,
        offer=offer if offer.pk != reservation.offer_id else None,
    )
    moved = len(target.device_ids)
    ReservationStatusChange.objects.create(
        reservation=rehomed, from_status=rehomed.status, to_status=rehomed.status,
        reason_code=ReasonCode.WORKLOAD_FAILED_MOVED if failure.workload_only else ReasonCode.FAILOVER_MOVED,
        reason_params={
            "node": node.hostname, "at": time_param(at), "cards": moved, "tier": target.tier, "node_change": failure.change_id,
            # words are built when the reason is read, in the reader's language (marketplace.reasons)
            "target_model": offer.accelerator_model.name, "target_site": offer.cluster.site.name,
            "target_cluster": offer.cluster.name,
        },
    )
    if in_service and not ReservationDowntime.objects.filter(reservation=rehomed, ended_at__isnull=True).exists():
        # One open downtime at a time: a second failure during a move extends the same outage.
        ReservationDowntime.objects.get_or_create(
            reservation=rehomed, node=node, started_at=at, defaults={"cause": failure.cause}
        )
    transaction.on_commit(lambda: _provision_after_rehome(rehomed.pk))
    return "moved"


def _end_for_lack_of_capacity(*, reservation: Reservation, failure: NodeFailure, at: datetime, cards: int) -> None:
    booked_end = reservation.end
    device_allocations_truncate(reservation_id=reservation.pk, end=at, reason=DeviceAllocation.ReleaseReason.NODE_FAILED)
    if at > reservation.start:  # the period ends where service ended, as for an early release
        reservation.end = at
        reservation.save(update_fields=["end", "updated_at"])
    names = list(reservation.accepted_alternatives.values_list("name", flat=True))
    reservation_set_status(
        reservation=reservation, status=Reservation.Status.COMPLETED, at=at,
        reason_code=ReasonCode.WORKLOAD_FAILED_ENDED if failure.workload_only else ReasonCode.FAILOVER_NO_CAPACITY,
        reason_params={
            "node": failure.node.hostname, "at": time_param(at), "cards": cards, "node_change": failure.change_id,
            "accepted_models": names,
        },
    )
    # reservation_set_status closed any open downtime at `at`; this one is the time lost to the end.
    ReservationDowntime.objects.get_or_create(
        reservation=reservation, node=failure.node, started_at=at,
        defaults={"ended_at": max(booked_end, at), "cause": failure.cause},
    )


def _note_not_moved(*, reservation: Reservation, failure: NodeFailure, cards: int) -> str:
    if reservation.status_changes.filter(
        reason_code=ReasonCode.FAILOVER_NOT_MOVED, reason_params__node_change=failure.change_id
    ).exists():
        return "skipped"
    ReservationStatusChange.objects.create(
        reservation=reservation, from_status=reservation.status, to_status=reservation.status,
        reason_code=ReasonCode.FAILOVER_NOT_MOVED,
        reason_params={"node": failure.node.hostname, "cards": cards, "node_change": failure.change_id},
    )
    return "noted"


def reservation_workload_failover(*, reservation: Reservation, node: Node, at: datetime) -> str:
    """The workload of an active (or migrating) reservation died on a node that is itself healthy: its
    container crashed or exited, or a card fell off (the agent's report, arrived at `at`). For this
    reservation that is the node's share failing: it fails over exactly as for a failed node, from `at`
    (the report's arrival - the server's clock, never the agent's): the share moves (a downtime record
    opens at `at`, closed when the new cards report healthy), or, with nothing equivalent free, the
    reservation ends at `at` with notice. The node's reliability record counts a failover (host fault).
    Call it inside the report's transaction, the reservation row locked. Returns what
    reservation_failover returns."""
    failure = NodeFailure(node=node, change=None, at=at, cause=ReliabilityEvent.Cause.HOST_FAULT)
    result = reservation_failover(reservation_id=reservation.pk, failure=failure, now=at)
    if result in ("moved", "ended"):
        node_reliability_record(
            node=node, kind=ReliabilityEvent.Kind.FAILOVER, cause=failure.cause, at=at,
            details=f"the workload of reservation {reservation.pk} stopped in service"[:300],
        )
    return result


def reservation_move_failed(*, reservation: Reservation, node: Node, at: datetime, reason: str) -> Reservation:
    """A migrating reservation's new cards did not start (the boot failed, or missed its deadline, at `at`).

    The rule: the move is given up and the reservation ends at `at` - COMPLETED, not FAILED (it was
    served until its old node failed, and "failed" bills nothing) - with the node's reason on its
    timeline. Nothing since service stopped is billed: the old share's segments closed at the failure,
    the new cards' segments never opened (they open only on a healthy report), and a share that kept
    running on a healthy node is billed until `at`, when it is stopped. The open downtime record runs to
    the booked end (the time the buyer lost, for SLA credits). Trying yet another candidate was
    considered and left out: a node that fails boots would be retried with its next free cards, and
    every try adds a boot deadline to the outage. Call it inside the report's (or the sweeper's)
    transaction, the reservation row locked."""
    booked_end = reservation.end
    open_downtime = list(ReservationDowntime.objects.filter(reservation=reservation, ended_at__isnull=True).values_list("pk", flat=True))
    device_allocations_truncate(reservation_id=reservation.pk, end=at, reason=DeviceAllocation.ReleaseReason.NODE_FAILED)
    if reservation.start < at < reservation.end:
        reservation.end = at
        reservation.save(update_fields=["end", "updated_at"])
    reservation = reservation_set_status(
        reservation=reservation, status=Reservation.Status.COMPLETED, at=at, reason_code=ReasonCode.MOVE_BOOT_FAILED,
        reason_params={"node": node.hostname, "reason": reason, "at": time_param(at)},
    )
    # reservation_set_status closed the outage at `at`; the buyer lost the rest of the booked period too.
    ReservationDowntime.objects.filter(pk__in=open_downtime).update(ended_at=Greatest(F("started_at"), Value(max(booked_end, at))))
    return reservation


def reservations_failover(*, node_ids: list[int], now: datetime | None = None) -> dict[str, int]:
    """Fail over every reservation holding cards on these nodes (those still lost). Returns counts per
    outcome. Safe to run any number of times (see the module docstring)."""
    now = now or timezone.now()
    outcome = {"moved": 0, "ended": 0, "noted": 0, "skipped": 0}
    for node in Node.objects.filter(pk__in=node_ids).order_by("pk"):
        failure = node_failure(node=node)
        if failure is None:
            continue
        reservation_ids = sorted(set(
            DeviceAllocation.objects.filter(
                node_id=node.pk, is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION, period__endswith__gt=now
            ).values_list("reservation_id", flat=True)
        ))
        served = 0
        for reservation_id in reservation_ids:
            status = Reservation.objects.filter(pk=reservation_id).values_list("status", flat=True).first()
            result = reservation_failover(reservation_id=reservation_id, failure=failure, now=now)
            outcome[result] += 1
            if result in ("moved", "ended") and status in IN_SERVICE:
                served += 1
        if served:
            node_reliability_record(
                node=node, kind=ReliabilityEvent.Kind.FAILOVER, cause=failure.cause, at=failure.at,
                details=f"{served} reservation(s) in service moved or ended ({failure.change.reason})"[:300],
            )
    return outcome


def reservations_failover_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fail over what the capacity_lost task never reached (beat, with the provisioning sweep): reservations
    in service that still hold cards, now, on a node that is out of service. The task can be lost (the
    broker down when the node's status changed, a worker killed) or give up (it lost the race for free
    cards PICK_ATTEMPTS times); without this such a reservation would keep its open segment on a dead
    node - billed - until its end. Idempotent: reservations_failover moves nothing twice."""
    now = now or timezone.now()
    in_service_ids = Reservation.objects.filter(status__in=IN_SERVICE).values("pk")
    node_ids = sorted(set(
        DeviceAllocation.objects.filter(
            node__status__in=CAPACITY_LOST_STATUSES, is_active=True, purpose=DeviceAllocation.Purpose.RESERVATION,
            period__contains=now, reservation_id__in=in_service_ids,
        ).values_list("node_id", flat=True)
    ))
    if not node_ids:
        return {"nodes": 0}
    return {"nodes": len(node_ids), **reservations_failover(node_ids=node_ids, now=now)}
