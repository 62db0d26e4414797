"""Finance's on-demand billing run and the invoice CSV export as jobs on a real Celery worker, started
from /finance/runs/: the run drafts the same invoices as the service, the export's file is the
synchronous export byte for byte, and both report their progress."""

import re
import time

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Job
from billing.models import Invoice
from billing.services import billing_run_organization
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.factories import OrganizationFactory, UserFactory, staff_group

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def finance_client():
    user = UserFactory()
    user.groups.add(staff_group("finance"))
    client = Client()
    client.force_login(user)
    return client


def _wait_finished(client, job_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/jobs/{job_id}/status.json").json()
        if state["finished"]:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {state}")


def _job_id(response) -> int:
    assert response.status_code == 302, response.content[:300]
    return int(re.fullmatch(r"/jobs/(\d+)/", response["Location"]).group(1))


def _invoices(buyer) -> list[tuple]:
    """What a buyer was invoiced, comparable across buyers: per invoice its period, currency, total and lines."""
    return [
        (invoice.period_start, invoice.period_end, invoice.currency, invoice.status, invoice.total_minor,
         sorted((line.kind, line.card_seconds, line.price_per_card_hour_minor, line.amount_minor) for line in invoice.lines.all()))
        for invoice in Invoice.objects.filter(buyer=buyer).prefetch_related("lines").order_by("period_start", "currency")
    ]


def test_the_billing_run_job_drafts_the_same_invoices_as_the_service(finance_client, offer, celery_worker_process):
    by_service, by_job = OrganizationFactory(name="Served by the service"), OrganizationFactory(name="Served by the job")
    for buyer in (by_service, by_job):
        served(buyer=buyer, offer=offer, periods=[(MARCH + 2 * H, MARCH + 9 * H)])
        served(buyer=buyer, offer=offer, cards=4, periods=[(APRIL + H, APRIL + 5 * H)], node_index=1)
    assert "Served by the job" in finance_client.get("/finance/runs/").content.decode()
    billing_run_organization(organization_id=by_service.pk, now=timezone.now())

    job_id = _job_id(finance_client.post("/finance/runs/billing/", {"organization": by_job.pk}))
    state = _wait_finished(finance_client, job_id)

    assert state["status"] == "done", state
    expected = _invoices(by_service)
    assert len(expected) == 2 and _invoices(by_job) == expected
    assert sorted(state["result"]["invoice_ids"]) == sorted(Invoice.objects.filter(buyer=by_job).values_list("pk", flat=True))
    # progress counted every whole month since March, all done
    assert state["total"] >= 2 and state["done"] == state["total"] and state["percent"] == 100
    page = finance_client.get(f"/jobs/{job_id}/").content.decode()
    assert "2 draft invoices created." in page
    assert all(f"/finance/invoices/{pk}/" in page for pk in state["result"]["invoice_ids"])
    # a second run finds nothing due
    again = _wait_finished(finance_client, _job_id(finance_client.post("/finance/runs/billing/", {"organization": by_job.pk})))
    assert again["status"] == "done" and again["result"]["invoice_ids"] == []
    assert Invoice.objects.filter(buyer=by_job).count() == 2


def test_the_csv_export_job_file_is_the_synchronous_export(finance_client, offer, celery_worker_process):
    for name in ("Alpha Labs", "Beta, \"quoted\" AI"):
        buyer = OrganizationFactory(name=name)
        served(buyer=buyer, offer=offer, periods=[(MARCH + 2 * H, MARCH + 6 * H)])
        billing_run_organization(organization_id=buyer.pk, now=APRIL + H)
    synchronous = finance_client.get("/finance/invoices.csv").content

    job_id = _job_id(finance_client.post("/finance/runs/export/"))
    state = _wait_finished(finance_client, job_id)

    assert state["status"] == "done", state
    assert state["download"] == f"/jobs/{job_id}/download/"
    download = finance_client.get(state["download"])
    assert download["Content-Type"].startswith("text/csv")
    assert download["Content-Disposition"].startswith('attachment; filename="invoices-')
    assert download.content == synchronous and synchronous.count(b"\n") == 3
    assert (state["done"], state["total"]) == (2, 2)
    # the export belongs to the finance staff member who started it: another one does not see it
    other = UserFactory()
    other.groups.add(staff_group("finance"))
    other_client = Client()
    other_client.force_login(other)
    assert other_client.get(state["download"]).status_code == 404
    assert f"#{job_id}" in finance_client.get("/finance/runs/").content.decode()
    assert f"#{job_id}" not in other_client.get("/finance/runs/").content.decode()
    assert Job.objects.get(pk=job_id).owner_id != other.pk


@pytest.mark.django_db(transaction=False)
def test_a_billing_run_for_no_buyer_starts_nothing(finance_client):
    provider = OrganizationFactory(kind="provider")
    for value in ("", "abc", str(provider.pk), "999999"):
        response = finance_client.post("/finance/runs/billing/", {"organization": value})
        assert response.status_code == 302 and response["Location"] == "/finance/runs/"
    assert not Job.objects.exists()
