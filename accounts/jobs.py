"""Jobs: long operations started from a page, run by a Celery task, with live progress (accounts.models.Job).

- job_start (service): records the job, then enqueues its kind's task once the transaction commits.
- job_run (service, called by each kind's task): claims the job under its row lock (a redelivered
  message for a job already claimed does nothing), runs the work with a JobProgress, and records the
  result - or the failure, with the rows that failed when the work says which (JobFailed).
- job_get (selector): a job only for the members of its organization (platform staff's org-less jobs:
  only their owner); anyone else gets DoesNotExist, which the views turn into a 404.

accounts depends on no other app: the task of each kind is named here and sent by name.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import Job, Organization, User

logger = logging.getLogger(__name__)

JOB_TASKS = {
    Job.Kind.NODE_IMPORT: "inventory.node_import_job",
    Job.Kind.BILLING_RUN: "billing.billing_run_job",
    Job.Kind.INVOICE_EXPORT: "billing.invoice_export_job",
}
# Progress is written at most this often (plus the last step): a 10,000-row import must not become
# 10,000 UPDATEs, and the page polls once a second anyway.
PROGRESS_MIN_INTERVAL_SECONDS = 0.25


@dataclass
class JobOutcome:
    """What a finished job shows: a summary, data for its page, a link, an optional file to download."""

    message: str
    result: dict = field(default_factory=dict)
    link: str = ""
    file: bytes | None = None
    filename: str = ""
    content_type: str = ""


class JobFailed(Exception):
    """The work refused its input (e.g. bad rows): the job fails with this message and result."""

    def __init__(self, message: str, *, result: dict | None = None):
        super().__init__(message)
        self.message = message
        self.result = result or {}


class JobProgress:
    """Reports progress from inside a task: `progress(done=..., total=..., message=...)`.

    Writes are throttled (PROGRESS_MIN_INTERVAL_SECONDS) except for a new total, the end, or `force`.
    Each write is its own UPDATE in autocommit, so call it outside transaction.atomic() - inside one
    the page would not see it until the end.
    """

    def __init__(self, job_id: int, *, min_interval: float = PROGRESS_MIN_INTERVAL_SECONDS):
        self.job_id = job_id
        self.min_interval = min_interval
        self.done = 0
        self.total = 0
        self.message = ""
        self._written_at = float("-inf")
        self.writes = 0

    def __call__(self, *, done: int, total: int | None = None, message: str | None = None, force: bool = False) -> None:
        """Record progress; written now if `force` (a new phase), the total changed, the end is reached
        or the last write is older than min_interval - else only remembered for the next write."""
        self.done = done
        changed_total = total is not None and total != self.total
        if total is not None:
            self.total = total
        if message is not None:
            self.message = message
        now = time.monotonic()
        at_end = self.total > 0 and done >= self.total
        if not (force or changed_total or at_end) and now - self._written_at < self.min_interval:
            return
        self._written_at = now
        self.writes += 1
        Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(
            progress_done=self.done, progress_total=self.total, message=self.message[:300]
        )


def job_start(
    *, owner: User, organization: Organization | None, kind: str, params: dict | None = None, input_data: bytes | None = None
) -> Job:
    """Record a queued job and enqueue its task once the caller's transaction commits.

    The job keeps the language it was started in (params["language"]): every message it writes, from
    "Waiting for a worker." to its result, is in that one language."""
    params = {"language": translation.get_language() or settings.LANGUAGE_CODE, **(params or {})}
    job = Job.objects.create(
        owner=owner, organization=organization, kind=kind, params=params, input_data=input_data,
        message=_("Waiting for a worker."),
    )
    task_name = JOB_TASKS[Job.Kind(kind)]
    transaction.on_commit(lambda: current_app.send_task(task_name, args=[job.pk]))
    return job


def job_run(*, job_id: int, work: Callable[[Job, JobProgress], JobOutcome]) -> str:
    """Run one queued job (the tasks call this); returns its final status.

    The work runs in the language the job was started in (params["language"]; for older jobs the owner's
    User.language, else LANGUAGE_CODE): the progress and result messages it writes with gettext are
    stored as the owner read the page that started it.

    Idempotent: the job is claimed (queued -> running) under its row lock, so a second delivery of the
    same message finds it running or finished and does nothing. Work that dies with the worker leaves
    the job "running" with its last progress (a known limit: nothing sweeps such jobs to failed yet;
    the work itself is safe to start again - the import is all-or-nothing, the billing run resumable).
    """
    started_in, owner_language = Job.objects.filter(pk=job_id).values_list("params__language", "owner__language").first() or ("", "")
    with translation.override(started_in or owner_language or settings.LANGUAGE_CODE):
        return _job_run(job_id=job_id, work=work)


def _job_run(*, job_id: int, work: Callable[[Job, JobProgress], JobOutcome]) -> str:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != Job.Status.QUEUED:
            return job.status if job else "missing"
        job.status = Job.Status.RUNNING
        job.started_at = timezone.now()
        job.message = _("Started.")
        job.save(update_fields=["status", "started_at", "message"])
    progress = JobProgress(job.pk)
    try:
        outcome = work(job, progress)
    except JobFailed as failed:
        _finish(job, status=Job.Status.FAILED, message=failed.message, result=failed.result, progress=progress)
        return Job.Status.FAILED
    except Exception:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        _finish(job, status=Job.Status.FAILED, message=_("The job stopped on an unexpected error; nothing more was done. "
                                                            "Try again, or tell support the job number."),
                result={}, progress=progress)
        return Job.Status.FAILED
    _finish(job, status=Job.Status.DONE, message=outcome.message, result=outcome.result, progress=progress, outcome=outcome)
    return Job.Status.DONE


def _finish(job: Job, *, status: str, message: str, result: dict, progress: JobProgress, outcome: JobOutcome | None = None) -> None:
    fields = {
        "status": status, "message": message[:300], "result": result, "finished_at": timezone.now(), "input_data": None,
        "progress_done": progress.total if status == Job.Status.DONE and progress.total else progress.done,
        "progress_total": progress.total,
    }
    if outcome is not None:
        fields.update(result_link=outcome.link, result_file=outcome.file, result_filename=outcome.filename,
                      result_content_type=outcome.content_type)
    Job.objects.filter(pk=job.pk).update(**fields)


# ------------------------------------------------------------------------------------------ selectors


def job_list(*, user: User, organization: Organization | None):
    """The jobs the viewer may see: their active organization's, and the org-less ones they started."""
    own_platform_jobs = Q(organization__isnull=True, owner=user)
    if organization is not None:
        return Job.objects.filter(Q(organization=organization) | own_platform_jobs)
    return Job.objects.filter(own_platform_jobs)


def job_get(*, user: User, organization: Organization | None, job_id: int) -> Job:
    """One job the viewer may see; Job.DoesNotExist otherwise (a 404 for the page)."""
    return job_list(user=user, organization=organization).defer("input_data", "result_file").get(pk=job_id)
