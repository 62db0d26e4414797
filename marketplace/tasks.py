from celery import shared_task

from marketplace.services import reservations_advance, reservations_note_capacity_lost


@shared_task(name="marketplace.reservations_advance")
def reservations_advance_task() -> dict:
    """Move reservations along with the clock (requested -> provisioning -> active -> completed, or
    failed: window missed, or hardware unhealthy at activation; see the service's docstring).
    Safe to run any number of times: a reservation already moved is left as it is."""
    return reservations_advance()


@shared_task(name="marketplace.reservations_on_capacity_lost")
def reservations_on_capacity_lost_task(node_ids: list[int]) -> dict:
    """Inventory lost these nodes' cards (offline, unhealthy, retired): note it on each active or
    upcoming reservation holding cards there. Only a timeline event for now - failover, which will
    move the reservations to other devices, comes next. Idempotent (see the service)."""
    return {"events": reservations_note_capacity_lost(node_ids=node_ids)}
