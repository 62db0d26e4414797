from celery import shared_task

from marketplace.services import reservations_advance


@shared_task(name="marketplace.reservations_advance")
def reservations_advance_task() -> dict:
    """Move reservations along with the clock (requested -> provisioning -> active -> completed, or
    failed: window missed, or hardware unhealthy at activation; see the service's docstring).
    Safe to run any number of times: a reservation already moved is left as it is."""
    return reservations_advance()
