"""Jobs (accounts.jobs): throttled progress, one run per job, failures recorded, and each job visible only
to its organization (org-less platform jobs: only to their owner). The worker runs are in
tests/inventory/test_node_import_jobs.py and tests/billing/test_billing_jobs.py."""

import pytest

from accounts.jobs import JobFailed, JobOutcome, JobProgress, job_get, job_run, job_start
from accounts.models import Job, Membership
from tests.factories import OrganizationFactory, UserFactory, member

pytestmark = pytest.mark.django_db


def running_job(**fields) -> Job:
    organization = OrganizationFactory()
    owner = member(organization=organization)
    return Job.objects.create(owner=owner, organization=organization, kind=Job.Kind.NODE_IMPORT, status=Job.Status.RUNNING, **fields)


def test_progress_writes_are_throttled_but_the_total_the_end_and_a_new_phase_always_land():
    job = running_job()
    progress = JobProgress(job.pk, min_interval=3600)
    progress(done=0, total=1000, message="Checking")
    for done in range(1, 1000):
        progress(done=done)
    job.refresh_from_db()
    # the new total was written; the 999 steps after it within the interval were not
    assert (job.progress_done, job.progress_total, progress.writes) == (0, 1000, 1)
    progress(done=500, message="Phase two", force=True)
    job.refresh_from_db()
    assert (job.progress_done, job.message, progress.writes) == (500, "Phase two", 2)
    progress(done=1000)
    job.refresh_from_db()
    assert (job.progress_done, job.progress_total, progress.writes) == (1000, 1000, 3)


def test_progress_is_written_again_once_the_interval_has_passed():
    job = running_job()
    progress = JobProgress(job.pk, min_interval=0)
    progress(done=0, total=10)
    progress(done=3)
    job.refresh_from_db()
    assert job.progress_done == 3 and progress.writes == 2


def test_a_job_runs_once_records_its_outcome_and_drops_its_input():
    job = running_job(input_data=b"abc")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.QUEUED)
    calls = []

    def work(job, progress):
        calls.append(bytes(job.input_data))
        progress(done=2, total=2)
        return JobOutcome(message="All done.", result={"n": 2}, link="/provider/", file=b"x,y\n", filename="f.csv", content_type="text/csv")

    assert job_run(job_id=job.pk, work=work) == Job.Status.DONE
    # a second delivery of the same message does nothing
    assert job_run(job_id=job.pk, work=work) == Job.Status.DONE
    assert calls == [b"abc"]
    job.refresh_from_db()
    assert (job.status, job.message, job.result, job.result_link, job.percent) == ("done", "All done.", {"n": 2}, "/provider/", 100)
    assert bytes(job.result_file) == b"x,y\n" and job.input_data is None and job.finished_at is not None


def test_a_refused_input_fails_the_job_with_its_result_and_an_unexpected_error_with_a_plain_message():
    refused = running_job()
    Job.objects.filter(pk=refused.pk).update(status=Job.Status.QUEUED)

    def refuse(job, progress):
        raise JobFailed("Row 3 is bad.", result={"row_errors": [{"row": 3}]})

    assert job_run(job_id=refused.pk, work=refuse) == Job.Status.FAILED
    refused.refresh_from_db()
    assert (refused.status, refused.message, refused.result) == ("failed", "Row 3 is bad.", {"row_errors": [{"row": 3}]})

    crashed = running_job()
    Job.objects.filter(pk=crashed.pk).update(status=Job.Status.QUEUED)

    def crash(job, progress):
        raise RuntimeError("boom: internal detail")

    assert job_run(job_id=crashed.pk, work=crash) == Job.Status.FAILED
    crashed.refresh_from_db()
    assert crashed.status == "failed" and "unexpected error" in crashed.message and "boom" not in crashed.message


def test_starting_a_job_enqueues_its_task_only_on_commit(django_capture_on_commit_callbacks):
    organization = OrganizationFactory()
    owner = member(organization=organization)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_start(owner=owner, organization=organization, kind=Job.Kind.NODE_IMPORT, input_data=b"x")
    assert len(callbacks) == 1
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


def test_a_job_is_visible_to_its_organization_only_and_an_org_less_job_to_its_owner_only(client):
    job = running_job(result_filename="f.csv", result_file=b"secret")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.DONE)
    colleague = member(organization=job.organization, role=Membership.Role.MEMBER)
    stranger = member(organization=OrganizationFactory())
    client.force_login(stranger)
    for path in (f"/jobs/{job.pk}/", f"/jobs/{job.pk}/status.json", f"/jobs/{job.pk}/download/"):
        assert client.get(path).status_code == 404, path
    client.force_login(colleague)
    assert client.get(f"/jobs/{job.pk}/status.json").json()["status"] == "done"
    assert client.get(f"/jobs/{job.pk}/download/").content == b"secret"

    staff, other_staff = UserFactory(), UserFactory()
    platform_job = Job.objects.create(owner=staff, organization=None, kind=Job.Kind.INVOICE_EXPORT)
    assert job_get(user=staff, organization=None, job_id=platform_job.pk) == platform_job
    with pytest.raises(Job.DoesNotExist):
        job_get(user=other_staff, organization=None, job_id=platform_job.pk)
    client.force_login(other_staff)
    assert client.get(f"/jobs/{platform_job.pk}/").status_code == 404
    client.force_login(staff)
    assert client.get(f"/jobs/{platform_job.pk}/").status_code == 200
    client.logout()
    assert client.get(f"/jobs/{job.pk}/status.json").status_code == 302


def test_the_admin_lists_jobs_read_only(client):
    job = running_job(input_data=b"x" * 100)
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    assert str(job.pk) in client.get("/admin/accounts/job/").content.decode()
    page = client.get(f"/admin/accounts/job/{job.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.get("/admin/accounts/job/add/").status_code == 403
