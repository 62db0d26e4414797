"""Marketplace's answers to inventory's signals (connected in MarketplaceConfig.ready).

Inventory sends its signals after commit and never imports the market; the receivers here only
enqueue a thin task (by ids), itself after commit, so a request never waits for the market's work.
"""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def on_capacity_lost(sender, *, node_ids: list[int], **kwargs) -> None:
    from marketplace.tasks import reservations_on_capacity_lost_task

    def enqueue():
        try:
            reservations_on_capacity_lost_task.delay(list(node_ids))
        except Exception:  # the broker is down: the node's change stands; the beat sweep (reservations_failover_sweep) fails them over
            logger.exception("could not enqueue marketplace.reservations_on_capacity_lost for nodes %s", node_ids)

    transaction.on_commit(enqueue)
