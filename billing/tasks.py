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


@shared_task(name="billing.invoice_pay")
def invoice_pay_task(*, invoice_id: int) -> int | None:
    """Charge the buyer's saved card for an open invoice (see billing.payments.invoice_pay)."""
    from billing.payments import invoice_pay

    attempt = invoice_pay(invoice_id=invoice_id)
    return attempt.pk if attempt else None


@shared_task(name="billing.refund_for_credit_note")
def refund_for_credit_note_task(*, credit_note_id: int) -> int | None:
    from billing.payments import refund_for_credit_note

    refund = refund_for_credit_note(credit_note_id=credit_note_id)
    return refund.pk if refund else None


@shared_task(name="billing.stripe_event_process")
def stripe_event_process_task(*, event_pk: int) -> str | None:
    """Process one stored webhook event (skipped if already processed)."""
    from billing.payments import stripe_event_process

    event = stripe_event_process(event_pk=event_pk)
    return event.status if event else None


@shared_task(name="billing.stripe_events_sweep")
def stripe_events_sweep_task() -> int:
    """Webhook events left unprocessed, then refunds never made (billing.payments.refunds_sweep)."""
    from billing.payments import refunds_sweep, stripe_events_sweep

    return stripe_events_sweep() + refunds_sweep()


@shared_task(name="billing.payout_run")
def payout_run_task() -> dict[str, int]:
    """Providers' shares of paid invoices out as Connect transfers (see billing.payments.payout_run)."""
    from billing.payments import payout_run

    return payout_run()


@shared_task(name="billing.billing_run_job", acks_late=True)
def billing_run_job_task(job_id: int) -> str:
    """Run one on-demand billing-run job (accounts.jobs); a job runs once, and the run itself is idempotent."""
    from billing.services import billing_run_job_run

    return billing_run_job_run(job_id=job_id)


@shared_task(name="billing.invoice_export_job", acks_late=True)
def invoice_export_job_task(job_id: int) -> str:
    """Build one finance CSV export job's file (accounts.jobs). Read-only; a job runs once."""
    from billing.services import invoice_export_job_run

    return invoice_export_job_run(job_id=job_id)
