"""The node import as a job: the page checks the file's shape, a real Celery worker checks the rows and
creates the nodes, and the job's page and JSON show the progress rising and then the result."""

import re
import time

import psycopg2
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from accounts.models import Job
from inventory.models import Device, Node
from inventory.services import nodes_import_job_run
from tests.inventory.test_node_import import csv_of

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _start(client, data: bytes) -> int:
    response = client.post("/provider/nodes/import/", {"file": SimpleUploadedFile("nodes.csv", data)})
    assert response.status_code == 302, response.content[:500]
    return int(re.fullmatch(r"/jobs/(\d+)/", response["Location"]).group(1))


def _poll(client, job_id: int, until, timeout: float = 60) -> tuple[dict, list[dict]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/jobs/{job_id}/status.json").json()
        seen.append(state)
        if until(state):
            return state, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there; last seen {seen[-1]}")


def _other_connection():
    settings = connection.settings_dict
    return psycopg2.connect(dbname=settings["NAME"], user=settings["USER"], password=settings["PASSWORD"] or None,
                            host=settings["HOST"] or None, port=settings["PORT"] or None)


def test_an_import_job_runs_on_the_worker_with_its_progress_rising_on_the_page_and_in_json(provider, celery_worker_process):
    client = _signed_in(provider.user)
    rows = 300
    # Hold the cluster's row: the worker checks every row, then waits to insert the nodes (their foreign
    # key needs a share lock on it), so the test sees the job between its two halves, deterministically.
    blocker = _other_connection()
    blocker.cursor().execute("SELECT id FROM inventory_cluster WHERE id = %s FOR UPDATE", [provider.cluster.pk])
    try:
        job_id = _start(client, csv_of(provider.cluster.pk, rows))
        assert Job.objects.get(pk=job_id).status in {"queued", "running"}
        middle, seen = _poll(client, job_id, lambda s: s["message"].startswith("Creating"))
        assert (middle["status"], middle["done"], middle["total"], middle["percent"]) == ("running", rows, 2 * rows, 50)
        page = client.get(f"/jobs/{job_id}/").content.decode()
        assert f"{rows} of {2 * rows} (50%)" in page and 'data-status="running"' in page
        assert 'http-equiv="refresh"' in page and "job_progress.js" in page  # followed with or without JS
        assert not Node.objects.filter(hostname__startswith="gpu-").exists()
    finally:
        blocker.rollback()
        blocker.close()
    final, later = _poll(client, job_id, lambda s: s["finished"])
    progress = [state["done"] for state in seen + later]
    assert progress == sorted(progress), "progress went backwards"
    assert (final["status"], final["done"], final["total"], final["percent"]) == ("done", 2 * rows, 2 * rows, 100)
    assert final["result"] == {"created": rows, "cards": 8 * rows, "cluster_ids": [provider.cluster.pk]}
    assert final["result_link"] == f"/provider/clusters/{provider.cluster.pk}/"
    assert Node.objects.filter(cluster=provider.cluster, hostname__startswith="gpu-").count() == rows
    assert Device.objects.filter(node__hostname__startswith="gpu-").count() == 8 * rows
    page = client.get(f"/jobs/{job_id}/").content.decode()
    assert f"Imported {rows} nodes ({8 * rows:,} cards)." in page and "job_progress.js" not in page
    assert Job.objects.get(pk=job_id).input_data is None


def test_a_failing_row_fails_the_job_with_the_row_in_its_result_and_imports_nothing(provider, celery_worker_process):
    client = _signed_in(provider.user)
    data = csv_of(provider.cluster.pk, 50).replace(b"gpu-0007,", b"gpu_0007!,")
    job_id = _start(client, data)
    final, _ = _poll(client, job_id, lambda s: s["finished"])
    assert final["status"] == "failed"
    assert final["result"]["bad_row_count"] == 1
    assert [(e["row"], e["column"]) for e in final["result"]["row_errors"]] == [(9, "hostname")]
    page = client.get(f"/jobs/{job_id}/").content.decode()
    assert "Nothing was imported: 1 bad row" in page and 'data-row="9"' in page
    assert not Node.objects.filter(hostname__startswith="gpu-").exists()
    # the other organization does not see it, in any form
    other = _signed_in(provider_other_owner())
    for path in (f"/jobs/{job_id}/", f"/jobs/{job_id}/status.json", f"/jobs/{job_id}/download/"):
        assert other.get(path).status_code == 404
    # the import page lists it among its organization's recent imports, and only there
    assert f'data-job="{job_id}"' in client.get("/provider/nodes/import/").content.decode()
    assert f'data-job="{job_id}"' not in other.get("/provider/nodes/import/").content.decode()


def provider_other_owner():
    from tests.inventory.conftest import provider_with_inventory

    return provider_with_inventory("Bravo").user


@pytest.mark.django_db(transaction=False)
def test_the_page_refuses_a_bad_file_at_once_and_runs_no_job(provider, client):
    client.force_login(provider.user)
    response = client.post("/provider/nodes/import/", {"file": SimpleUploadedFile("n.csv", b"hostname,cluster\nx,1\n")})
    assert response.status_code == 400
    assert "Missing column(s)" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=False)
def test_a_job_for_an_organization_that_lost_its_cluster_fails_with_a_row_error(provider, client):
    # The job checks the rows when it runs, not when it was queued: run in-process, the same service the task calls.
    client.force_login(provider.user)
    job_id = _start(client, csv_of(provider.cluster.pk, 3))
    provider.cluster.nodes.all().delete()
    provider.cluster.offers.all().delete()
    provider.cluster.delete()
    assert nodes_import_job_run(job_id=job_id) == "failed"
    job = Job.objects.get(pk=job_id)
    assert job.result["bad_row_count"] == 3 and job.result["row_errors"][0]["column"] == "cluster"
