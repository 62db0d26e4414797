from datetime import datetime

from celery import shared_task

from billing.services import billing_run, billing_run_organization


@shared_task(name="billing.billing_run")
def billing_run_task(*, organization_ids: list[int] | None = None, as_of: str | None = None, pause_seconds: float = 0.0) -> int:
    """Invoice every buyer whose local month has ended by `as_of` (ISO instant; default now), or only
    the given organizations. Safe to run twice, or again after a crash: the per-organization cursor
    decides what is still due."""
    return billing_run(organization_ids=organization_ids, now=datetime.fromisoformat(as_of) if as_of else None,
                       pause_seconds=pause_seconds)


@shared_task(name="billing.billing_run_organization")
def billing_run_organization_task(*, organization_id: int) -> list[int]:
    """The on-demand run for one buyer organization (see billing_run_organization)."""
    return billing_run_organization(organization_id=organization_id)
