from celery import shared_task

from marketplace.metering.partitions import usage_partitions_maintain
from marketplace.metering.services import usage_rollup_refresh
from marketplace.services import reservations_advance, reservations_note_capacity_lost


@shared_task(name="marketplace.reservations_advance")
def reservations_advance_task() -> dict:
    """Move reservations along with the clock (requested -> provisioning -> active -> completed, or
    failed: window missed, or hardware unhealthy at activation; see the service's docstring).
    Safe to run any number of times: a reservation already moved is left as it is."""
    return reservations_advance()


@shared_task(name="marketplace.usage_rollup_refresh")
def usage_rollup_refresh_task() -> int:
    """Roll up the hours that received usage samples, a slice at a time until none is left (bounded,
    so one run never holds a transaction for long). Safe to run twice: it recomputes, never adds."""
    total = 0
    for _ in range(50):
        done = usage_rollup_refresh()
        total += done
        if not done:
            break
    return total


@shared_task(name="marketplace.usage_partitions_maintain")
def usage_partitions_maintain_task() -> dict:
    """Create the raw samples' daily partitions ahead and drop those past the retention (idempotent)."""
    return usage_partitions_maintain()


@shared_task(name="marketplace.reservations_on_capacity_lost")
def reservations_on_capacity_lost_task(node_ids: list[int]) -> dict:
    """Inventory lost these nodes' cards (offline, unhealthy, retired): note it on each active or
    upcoming reservation holding cards there. Only a timeline event for now - failover, which will
    move the reservations to other devices, comes next. Idempotent (see the service)."""
    return {"events": reservations_note_capacity_lost(node_ids=node_ids)}


@shared_task(name="marketplace.network_dashboard_refresh")
def network_dashboard_refresh_task() -> dict:
    """Recompute the network dashboard into the cache, so no page view pays for it. Safe to run any number of times."""
    from marketplace.dashboard import network_dashboard_refresh

    figures = network_dashboard_refresh()
    return {"listed_cards": figures["summary"]["listed_cards"], "rented_cards": figures["summary"]["rented_cards"]}
