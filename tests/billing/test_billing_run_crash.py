"""A billing run in a real Celery worker, killed with SIGKILL halfway and run again, produces exactly
the invoices of a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from billing.models import BillingAccount, Invoice, InvoiceLine, InvoiceLineEvidence, InvoiceStatusChange
from billing.services import billing_run
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.conftest import BASE_DIR, _database_url_for
from tests.factories import OrganizationFactory

AS_OF = datetime(2026, 6, 1, 12, tzinfo=UTC)  # March, April and May are due for every buyer
BUYERS = 12


def start_worker(queue: str, tag: str) -> tuple[subprocess.Popen, object]:
    from django.conf import settings
    from django.db import connection

    from config.celery import app

    env = dict(os.environ, DATABASE_URL=_database_url_for(connection.settings_dict["NAME"]), REDIS_URL=settings.REDIS_URL)
    log = (BASE_DIR / ".local" / f"test-billing-crash-{tag}.log").open("w")
    hostname = f"billing-crash-{tag}-{os.getpid()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO", "-Q", queue,
         "--without-gossip", "--without-mingle", "--hostname", f"{hostname}@%h"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the Celery worker exited during start-up"
        if any(name.startswith(hostname) for name in (app.control.inspect(timeout=0.5).ping() or {})):
            return process, log
    process.kill()
    log.close()
    raise AssertionError("the Celery worker did not answer within 60 s")


def invoices_as_data(buyer_ids):
    """Everything the run decides, without ids or timestamps of the write."""
    invoices = sorted(Invoice.objects.filter(buyer_id__in=buyer_ids).values_list("buyer_id", "currency", "period_start", "period_end",
                                                                                 "status", "number", "total_minor"))
    lines = sorted(InvoiceLine.objects.filter(invoice__buyer_id__in=buyer_ids).values_list(
        "invoice__buyer_id", "invoice__period_start", "reservation_id", "provider_id", "kind", "period_start", "period_end",
        "card_seconds", "amount_minor"))
    evidence = sorted(InvoiceLineEvidence.objects.filter(line__invoice__buyer_id__in=buyer_ids).values_list(
        "line__reservation_id", "line__period_start", "device_id", "hour", "billable_seconds"))
    cursors = sorted(BillingAccount.objects.filter(organization_id__in=buyer_ids).values_list("organization_id", "invoiced_through",
                                                                                             "invoicing_status"))
    return {"invoices": invoices, "lines": lines, "evidence": evidence, "cursors": cursors}


def forget_billing():
    InvoiceLineEvidence.objects.all().delete()
    InvoiceLine.objects.all().delete()
    InvoiceStatusChange.objects.all().delete()
    Invoice.objects.all().delete()
    BillingAccount.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_halfway_and_rerun_invoices_exactly_what_an_uninterrupted_run_does(offer, usd_offer):
    from billing.tasks import billing_run_task

    # Given buyers with usage in March and April (one across the boundary), in two currencies
    buyers = [OrganizationFactory() for _ in range(BUYERS)]
    for n, buyer in enumerate(buyers):
        served(buyer=buyer, offer=offer, cards=1 + n % 8, node_index=n % 2,
               periods=[(MARCH + (n + 1) * H, MARCH + (n + 5) * H), (MARCH + (n + 7) * H, MARCH + (n + 9) * H)])
        served(buyer=buyer, offer=usd_offer, cards=1 + n % 3, periods=[(APRIL - (n + 2) * H, APRIL + (n + 3) * H + timedelta(seconds=n))])
    ids = [b.pk for b in buyers]
    # And what an uninterrupted run invoices
    billing_run(organization_ids=ids, now=AS_OF)
    uninterrupted = invoices_as_data(ids)
    assert len(uninterrupted["invoices"]) == BUYERS * 3  # March CNY + USD, April USD
    forget_billing()

    queue = f"billing-crash-{uuid.uuid4().hex[:8]}"  # only this test's workers listen: a lost message never reaches another
    worker, log = start_worker(queue, "first")
    try:
        # When a worker runs the same billing run (slowed between buyers) and is SIGKILLed halfway, while
        # it is inside a buyer's months (the account says "started")
        billing_run_task.apply_async(kwargs={"organization_ids": ids, "as_of": AS_OF.isoformat(), "pause_seconds": 0.4}, queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = list(BillingAccount.objects.values_list("invoicing_status", flat=True))
            if statuses.count("done") >= 3 and "started" in statuses:
                break
            time.sleep(0.01)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
    # Then the run really stopped part-way: some buyers invoiced, one left started, others not reached
    invoiced = Invoice.objects.values("buyer_id").distinct().count()
    assert 3 <= invoiced < BUYERS, f"the kill was not halfway ({invoiced} of {BUYERS} buyers invoiced)"
    assert BillingAccount.objects.filter(invoicing_status="started").count() == 1

    # When the run is started again, on a new worker
    rerun, log = start_worker(queue, "rerun")
    try:
        result = billing_run_task.apply_async(kwargs={"organization_ids": ids, "as_of": AS_OF.isoformat()}, queue=queue)
        result.get(timeout=120)
    finally:
        rerun.terminate()
        rerun.wait(timeout=20)
        log.close()
    # Then the invoices, lines, evidence and cursors are exactly those of the uninterrupted run
    assert invoices_as_data(ids) == uninterrupted
