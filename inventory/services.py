"""Writes of inventory. Every change users see goes through a function here."""

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from inventory.models import Node, NodeStatusChange, Site, SiteLifecycleChange
from inventory.selectors import NETWORK_TOTALS_CACHE_KEY, NETWORK_TOTALS_CACHE_SECONDS, network_totals

# Allowed next states. Anything else is refused by the *_set_* services below.
NODE_TRANSITIONS: dict[str, set[str]] = {
    Node.Status.REGISTERED: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.ONLINE: {Node.Status.MAINTENANCE, Node.Status.UNHEALTHY, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.MAINTENANCE: {Node.Status.ONLINE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.UNHEALTHY: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.OFFLINE, Node.Status.RETIRED},
    Node.Status.OFFLINE: {Node.Status.ONLINE, Node.Status.MAINTENANCE, Node.Status.UNHEALTHY, Node.Status.RETIRED},
    Node.Status.RETIRED: set(),
}

SITE_TRANSITIONS: dict[str, set[str]] = {
    Site.Lifecycle.PLANNED: {Site.Lifecycle.UNDER_CONSTRUCTION, Site.Lifecycle.RETIRED},
    Site.Lifecycle.UNDER_CONSTRUCTION: {Site.Lifecycle.ONLINE, Site.Lifecycle.RETIRED},
    Site.Lifecycle.ONLINE: {Site.Lifecycle.RETIRED},
    Site.Lifecycle.RETIRED: set(),
}


@transaction.atomic
def node_set_status(*, node: Node, status: str, actor: User | None = None, reason: str = "") -> Node:
    """Move a node to `status`: locks the row, checks the move, writes an audit row.

    Setting the status a node already has is a no-op (so retried tasks are harmless).
    """
    node = Node.objects.select_for_update().get(pk=node.pk)
    if node.status == status:
        return node
    if status not in NODE_TRANSITIONS.get(node.status, set()):
        raise ValidationError({"status": f"A node cannot go from {node.status} to {status}."})
    NodeStatusChange.objects.create(node=node, from_status=node.status, to_status=status, actor=actor, reason=reason[:300])
    node.status = status
    node.save(update_fields=["status", "updated_at"])
    return node


@transaction.atomic
def site_set_lifecycle(*, site: Site, lifecycle: str, actor: User | None = None, reason: str = "") -> Site:
    """Move a site along its lifecycle: locks the row, checks the move, writes an audit row."""
    site = Site.objects.select_for_update().get(pk=site.pk)
    if site.lifecycle == lifecycle:
        return site
    if lifecycle not in SITE_TRANSITIONS.get(site.lifecycle, set()):
        raise ValidationError({"lifecycle": f"A site cannot go from {site.lifecycle} to {lifecycle}."})
    SiteLifecycleChange.objects.create(
        site=site, from_lifecycle=site.lifecycle, to_lifecycle=lifecycle, actor=actor, reason=reason[:300]
    )
    site.lifecycle = lifecycle
    site.save(update_fields=["lifecycle", "updated_at"])
    return site


def network_totals_refresh() -> dict:
    """Recompute the landing page's totals and keep them in the cache (run by Celery beat)."""
    totals = network_totals()
    cache.set(NETWORK_TOTALS_CACHE_KEY, totals, NETWORK_TOTALS_CACHE_SECONDS)
    return totals
