from celery import shared_task

from inventory.services import network_totals_refresh


@shared_task(name="inventory.network_totals_refresh")
def network_totals_refresh_task() -> dict:
    """Refresh the landing page's network totals in the cache. Safe to run any number of times."""
    totals = network_totals_refresh()
    return {"sites": totals["sites"], "cards": totals["cards"], "listed_ecu": str(totals["listed_ecu"])}
