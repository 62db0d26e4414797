"""Finance runs (/finance/runs/): the on-demand billing run of one buyer and the invoice CSV export, each
started as a job (accounts.jobs) whose page shows the progress and then the result or the file.

Thin: finance staff only (403 otherwise, as every finance page); each button calls one billing service.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.jobs import job_list
from accounts.models import Organization
from billing import selectors
from billing.services import billing_run_job_start, invoice_export_job_start
from frontend.views.billing import _finance

RECENT_JOBS = 20


@login_required
def finance_runs(request):
    _finance(request)
    jobs = job_list(user=request.user, organization=request.organization).filter(
        kind__in=["billing_run", "invoice_export"]).select_related("owner").defer("input_data", "result_file")[:RECENT_JOBS]
    return render(request, "billing/finance_runs.html", {"buyers": selectors.billing_run_buyer_list(), "jobs": jobs})


@login_required
@require_POST
def finance_run_billing(request):
    _finance(request)
    try:
        organization_id = int(request.POST.get("organization", ""))
        job = billing_run_job_start(organization_id=organization_id, actor=request.user)
    except (ValueError, Organization.DoesNotExist):
        messages.error(request, _("Nothing started: choose a buyer organization."))
        return redirect("frontend:finance-runs")
    return redirect("frontend:job", job_id=job.pk)


@login_required
@require_POST
def finance_run_export(request):
    _finance(request)
    job = invoice_export_job_start(actor=request.user)
    return redirect("frontend:job", job_id=job.pk)
