from celery import shared_task
from django.utils import timezone

from marketplace.metering.partitions import usage_partitions_maintain
from marketplace.metering.services import usage_rollup_refresh
from marketplace.notifications import reservations_notify_ending_soon
from marketplace.provisioning.services import reservation_provision, reservations_sweep
from marketplace.services import reservations_advance, reservations_note_capacity_lost


@shared_task(name="marketplace.reservations_advance")
def reservations_advance_task() -> dict:
    """Move reservations along with the clock: a start reached enqueues provisioning, an end reached
    completes, a window missed fails (see the service's docstring). Never activates: only the nodes'
    reports do. Safe to run any number of times: a reservation already moved is left as it is."""
    return reservations_advance()


# acks_late (also the default in settings): a worker killed mid-task leaves the message to be
# redelivered, and the sweeper re-drives it meanwhile - the service is idempotent either way.
@shared_task(name="marketplace.reservation_provision", acks_late=True)
def reservation_provision_task(reservation_id: int) -> dict:
    """requested -> provisioning once the start has come, and publish the missing node assignments
    (marketplace.provisioning.services.reservation_provision). Idempotent, by id."""
    result = reservation_provision(reservation_id)
    return {"status": result.status, "published": result.published}


@shared_task(name="marketplace.reservations_sweep")
def reservations_sweep_task() -> dict:
    """Re-drive reservations stuck in a transitional state, fail boots past their deadline, re-send
    unconfirmed stops (marketplace.provisioning.services.reservations_sweep), and fail over reservations
    still served by a node out of service whose capacity_lost task was lost (marketplace.failover).
    Idempotent."""
    from marketplace.failover import reservations_failover_sweep

    return {**reservations_sweep(), "failover": reservations_failover_sweep()}


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
    """Inventory lost these nodes' cards (offline, unhealthy, maintenance, retired): note it on each
    active or upcoming reservation holding cards there, then fail them over to equivalent free cards
    (marketplace.failover). Idempotent: a redelivery moves nothing twice (see the services)."""
    from marketplace.failover import reservations_failover

    events = reservations_note_capacity_lost(node_ids=node_ids)
    return {"events": events, **reservations_failover(node_ids=node_ids)}


@shared_task(name="marketplace.reservations_notify_ending_soon")
def reservations_notify_ending_soon_task() -> int:
    """Tell buyers their reservations end within the hour (marketplace.notifications). Idempotent: each
    reservation and end is told once."""
    return reservations_notify_ending_soon(now=timezone.now())


@shared_task(name="marketplace.network_dashboard_refresh")
def network_dashboard_refresh_task() -> dict:
    """Recompute the network dashboard into the cache, so no page view pays for it. Safe to run any number of times."""
    from marketplace.dashboard import network_dashboard_refresh

    figures = network_dashboard_refresh()
    return {"listed_cards": figures["summary"]["listed_cards"], "rented_cards": figures["summary"]["rented_cards"]}
