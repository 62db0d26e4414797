"""Reliability records of nodes and providers, and the score buyers see.

Events (ReliabilityEvent): heartbeat_missed (the stale sweep found the agent silent), boot_failed (a
reservation's boot failed on the node), failover (a node failure took buyers' work off the node), each
with a cause: host_fault, network, maintenance.

The score (0-100), over the last RELIABILITY_WINDOW_DAYS days:

    node score     = max(0, 100 - sum of PENALTY[kind] over the node's events in the window),
                     events with cause "maintenance" (declared) not counted
    provider score = the card-weighted mean of its live (not retired) nodes' scores, rounded half up;
                     100 for a provider without nodes

with PENALTY = heartbeat_missed 2, boot_failed 5, failover 10. So one failover a month costs a node
10 points, and a provider with one bad node among ten equal ones loses a tenth of that node's loss.
Scores are stored (Node.reliability_score, ProviderReliability.score) and refreshed when an event
is recorded and by beat (inventory.reliability_refresh, hourly: old events leave the window).
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Organization
from inventory.models import Node, ProviderReliability, ReliabilityEvent

RELIABILITY_WINDOW_DAYS = 30
PENALTY = {
    ReliabilityEvent.Kind.HEARTBEAT_MISSED: 2,
    ReliabilityEvent.Kind.BOOT_FAILED: 5,
    ReliabilityEvent.Kind.FAILOVER: 10,
}


def node_score(events: Iterable[tuple[str, str]]) -> int:
    """The score of one node from its (kind, cause) events in the window (see the module docstring)."""
    lost = sum(PENALTY[kind] for kind, cause in events if cause != ReliabilityEvent.Cause.MAINTENANCE)
    return max(0, 100 - lost)


def provider_score(nodes: Iterable[tuple[int, int]]) -> int:
    """The card-weighted mean of (score, card_count) per node, rounded half up; 100 without nodes."""
    nodes = list(nodes)
    cards = sum(count for _, count in nodes)
    if not cards:
        return 100
    mean = Decimal(sum(score * count for score, count in nodes)) / Decimal(cards)
    return int(mean.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _window_start(now: datetime) -> datetime:
    return now - timedelta(days=RELIABILITY_WINDOW_DAYS)


def node_reliability_refresh(*, node: Node, now: datetime | None = None) -> int:
    now = now or timezone.now()
    events = ReliabilityEvent.objects.filter(node=node, at__gte=_window_start(now)).values_list("kind", "cause")
    score = node_score(events)
    Node.objects.filter(pk=node.pk).exclude(reliability_score=score).update(reliability_score=score)
    return score


def provider_reliability_refresh(*, organization_id: int, now: datetime | None = None) -> int:
    now = now or timezone.now()
    nodes = Node.objects.filter(cluster__site__owner_id=organization_id).exclude(status=Node.Status.RETIRED)
    score = provider_score(nodes.values_list("reliability_score", "card_count"))
    ProviderReliability.objects.update_or_create(organization_id=organization_id, defaults={"score": score, "refreshed_at": now})
    return score


def node_reliability_record(*, node: Node, kind: str, cause: str, at: datetime, details: str = "") -> ReliabilityEvent | None:
    """Record one event of a node (kind: ReliabilityEvent.Kind, cause: ReliabilityEvent.Cause) at `at`,
    and refresh the node's and its provider's scores. Idempotent: the same (node, kind, at) again
    records nothing and returns None."""
    if kind not in ReliabilityEvent.Kind.values:
        raise ValueError(f"Unknown reliability event kind {kind!r}.")
    if cause not in ReliabilityEvent.Cause.values:
        raise ValueError(f"Unknown reliability cause {cause!r}.")
    provider_id = Node.objects.filter(pk=node.pk).values_list("cluster__site__owner_id", flat=True).get()
    try:
        with transaction.atomic():
            event = ReliabilityEvent.objects.create(
                node_id=node.pk, provider_id=provider_id, kind=kind, cause=cause, at=at, details=details[:300]
            )
    except IntegrityError:
        return None  # recorded already (reliability_event_once)
    node_reliability_refresh(node=node)
    provider_reliability_refresh(organization_id=provider_id)
    return event


def reliability_refresh_all(*, now: datetime | None = None) -> int:
    """Recompute every node that has events (in or just out of the window) and every provider (beat).
    Returns the providers refreshed."""
    now = now or timezone.now()
    touched = set(ReliabilityEvent.objects.values_list("node_id", flat=True).distinct())
    touched |= set(Node.objects.filter(reliability_score__lt=100).values_list("pk", flat=True))
    for node in Node.objects.filter(pk__in=touched).only("pk"):
        node_reliability_refresh(node=node, now=now)
    providers = Organization.objects.filter(kind__in=[Organization.Kind.PROVIDER, Organization.Kind.BOTH]).values_list("pk", flat=True)
    for organization_id in providers:
        provider_reliability_refresh(organization_id=organization_id, now=now)
    return len(providers)


# ------------------------------------------------------------------------------------------- reads


def provider_reliability_score(*, organization: Organization) -> int:
    row = ProviderReliability.objects.filter(organization=organization).values_list("score", flat=True).first()
    return 100 if row is None else row


def node_reliability_events(*, node: Node, now: datetime | None = None):
    """The node's events in the window, newest first."""
    return ReliabilityEvent.objects.filter(node=node, at__gte=_window_start(now or timezone.now()))
