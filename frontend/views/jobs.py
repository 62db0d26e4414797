"""Job pages (/jobs/<id>/): the live progress and the result of a long operation (accounts.jobs).

Thin: each view looks the job up among the ones the viewer may see (accounts.jobs.job_get; anyone
else gets a 404, as for every object of another organization) and shows it. The page polls the JSON
view once a second with fetch; without JavaScript it refreshes itself until the job finishes.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from accounts.jobs import job_get
from accounts.models import Job
from billing.display import job_message_display


def _job(request, job_id: int) -> Job:
    try:
        return job_get(user=request.user, organization=request.organization, job_id=job_id)
    except Job.DoesNotExist:
        raise Http404(_("No such job.")) from None


def job_state(job: Job) -> dict:
    """What the page and its poller show; the same dict for the first render and every poll."""
    return {
        "id": job.pk, "kind": job.kind, "kind_display": job.get_kind_display(), "status": job.status,
        "status_display": job.get_status_display(), "finished": job.is_finished,
        "done": job.progress_done, "total": job.progress_total, "percent": job.percent,
        # billing's jobs word their progress in English: shown in the viewer's language (billing.display)
        "message": job_message_display(job.message),
        "result": job.result if job.is_finished else {},
        "result_link": job.result_link if job.status == Job.Status.DONE else "",
        "download": f"/jobs/{job.pk}/download/" if job.status == Job.Status.DONE and job.result_filename else "",
    }


@login_required
def job_page(request, job_id: int):
    job = _job(request, job_id)
    return render(request, "frontend/job.html", {"job": job, "state": job_state(job)})


@login_required
def job_status(request, job_id: int):
    response = JsonResponse(job_state(_job(request, job_id)))
    response["Cache-Control"] = "no-store"
    return response


@login_required
def job_download(request, job_id: int):
    job = _job(request, job_id)
    if job.status != Job.Status.DONE or not job.result_filename:
        raise Http404(_("This job has no file."))
    data = Job.objects.filter(pk=job.pk).values_list("result_file", flat=True).get()
    response = HttpResponse(bytes(data), content_type=job.result_content_type or "application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{job.result_filename}"'
    return response
