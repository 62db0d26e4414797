"""Inventory's news for the apps that depend on it, as Django signals sent after commit.

Inventory never imports the market (the dependency points marketplace -> inventory), so when capacity
disappears it only announces the fact; marketplace connects a receiver in its AppConfig.ready. The
signal is sent from transaction.on_commit: a status change that rolls back announces nothing, and a
receiver that enqueues a task never races the transaction that made the change.
"""

from django.db import transaction
from django.dispatch import Signal

from inventory.models import Node

# A node's cards stopped being usable: it went offline, unhealthy or into maintenance, or it (or its
# cluster) was retired. Sent with `node_ids` (a list of Node ids), after the change committed.
capacity_lost = Signal()

CAPACITY_LOST_STATUSES = frozenset(
    {Node.Status.OFFLINE, Node.Status.UNHEALTHY, Node.Status.MAINTENANCE, Node.Status.RETIRED}
)


def capacity_lost_send_on_commit(*, node_ids: list[int]) -> None:
    ids = sorted(set(node_ids))
    transaction.on_commit(lambda: capacity_lost.send(sender=Node, node_ids=ids))
