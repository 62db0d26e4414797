from celery import shared_task

from inventory.services import network_totals_refresh


@shared_task(name="inventory.network_totals_refresh")
def network_totals_refresh_task() -> dict:
    """Refresh the landing page's network totals in the cache. Safe to run any number of times."""
    totals = network_totals_refresh()
    return {"sites": totals["sites"], "cards": totals["cards"], "listed_ecu": str(totals["listed_ecu"])}


@shared_task(name="inventory.nodes_mark_stale")
def nodes_mark_stale_task() -> dict:
    """Move nodes whose agent stopped sending heartbeats to unhealthy (failover follows through
    capacity_lost). Safe to run any number of times."""
    from inventory.agent_services import nodes_mark_stale

    return {"marked_unhealthy": nodes_mark_stale()}


@shared_task(name="inventory.reliability_refresh")
def reliability_refresh_task() -> dict:
    """Recompute the stored reliability scores (events leave the window with time). Idempotent."""
    from inventory.reliability import reliability_refresh_all

    return {"providers": reliability_refresh_all()}



@shared_task(name="inventory.node_import_job", acks_late=True)
def node_import_job_task(job_id: int) -> str:
    """Run one node-import job (accounts.jobs). Idempotent: a job runs once, whatever the deliveries."""
    from inventory.services import nodes_import_job_run

    return nodes_import_job_run(job_id=job_id)
