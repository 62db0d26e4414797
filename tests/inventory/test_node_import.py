"""Bulk import of nodes from CSV: all rows valid or nothing imported, with a per-row report."""

import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inventory import services
from inventory.importers import COLUMNS, NodeImportInvalid, node_import_template
from inventory.models import Device, Node

pytestmark = pytest.mark.django_db

HEADER = "hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb,cpu_model"


def csv_of(cluster_id, count=200, model="nvidia-h100-sxm5-80gb", prefix="gpu"):
    lines = [HEADER] + [f"{prefix}-{i:04d},{cluster_id},{model},8,128,2048,15360,Xeon 8480+" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def import_errors(provider, data) -> NodeImportInvalid:
    nodes_before, devices_before = Node.objects.count(), Device.objects.count()
    with pytest.raises(NodeImportInvalid) as error:
        services.nodes_import_csv(organization=provider.organization, data=data)
    assert (Node.objects.count(), Device.objects.count()) == (nodes_before, devices_before), "something was imported"
    return error.value


def test_two_hundred_nodes_import_with_their_devices_in_few_queries(provider, django_assert_max_num_queries):
    # Given a CSV of 200 nodes of 8 cards
    data = csv_of(provider.cluster.pk)
    # When it is imported
    with django_assert_max_num_queries(15):
        nodes = services.nodes_import_csv(organization=provider.organization, data=data, actor=provider.user)
    # Then every node and its 8 devices exist, in a bounded number of queries (speed is bench/'s business)
    assert len(nodes) == 200
    assert provider.cluster.nodes.filter(hostname__startswith="gpu-").count() == 200
    assert Device.objects.filter(node__hostname__startswith="gpu-").count() == 1600
    assert all(node.status == Node.Status.REGISTERED for node in nodes)


def test_one_bad_row_rejects_the_file_with_its_row_number_and_reason(provider):
    lines = csv_of(provider.cluster.pk, count=200).decode().splitlines()
    lines[51] = lines[51].replace("nvidia-h100-sxm5-80gb", "quantum-gpu-9000")  # row 52 (the header is row 1)
    error = import_errors(provider, "\n".join(lines).encode())
    assert error.bad_row_count == 1
    assert error.fields() == {"row 52": ["accelerator_model: unknown accelerator model 'quantum-gpu-9000' (use a catalog name or slug)"]}
    assert "nothing was imported" in error.message


def test_every_bad_row_is_reported_not_just_the_first(provider, other_provider):
    data = "\n".join([
        HEADER,
        f"ok-1,{provider.cluster.pk},H100 SXM5 80GB,8,128,2048,15360,",        # row 2: fine (catalog name works)
        f"ok-1,{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,128,2048,15360,",  # row 3: duplicate in the file
        f"{provider.node.hostname},{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,1,1,1,",  # row 4: already listed
        f"ok-4,{other_provider.cluster.pk},nvidia-h100-sxm5-80gb,8,1,1,1,",   # row 5: another provider's cluster
        f"ok-5,{provider.cluster.pk},nvidia-h100-sxm5-80gb,eight,1,1,1,",     # row 6: not a number
        f"ok-6,{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,-4,1,1,",        # row 7: negative
        f"bad host,{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,1,1,1,",     # row 8: bad hostname
        f"ok-8,{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,1,1",            # row 9: missing value
    ]).encode()
    fields = import_errors(provider, data).fields()
    assert set(fields) == {"row 3", "row 4", "row 5", "row 6", "row 7", "row 8", "row 9"}
    assert "already in row 2" in fields["row 3"][0]
    assert "already listed in this cluster" in fields["row 4"][0]
    assert fields["row 5"] == [f"cluster: '{other_provider.cluster.pk}' is not one of your clusters"]
    assert fields["row 6"] == ["card_count: 'eight' is not a whole number"]
    assert fields["row 7"] == ["cpu_cores: -4 is out of range (1 to 4,096)"]
    assert fields["row 8"][0].startswith("hostname:")
    assert fields["row 9"] == ["row: has 6 values, the header has 8"]


def test_a_cluster_may_be_named_when_the_name_is_unique_and_cpu_model_left_out(provider):
    data = f"{HEADER}\nn-1,{provider.cluster.name},nvidia-h100-sxm5-80gb,8,1,1,1\n".encode()
    nodes = services.nodes_import_csv(organization=provider.organization, data=data)
    assert nodes[0].cluster == provider.cluster


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "The file is empty."),
        (b"hostname,cluster\nx,1\n", "Missing column(s): accelerator_model, card_count, cpu_cores, ram_gb, disk_gb."),
        (f"{','.join(COLUMNS)},ram\n".encode(), "Unknown column(s): 'ram'."),
        (f"{','.join(COLUMNS)}\n".encode(), "The file has a header but no nodes."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        ("hostname,cluster\nnœud".encode("latin-1", errors="replace") + b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_refused_with_a_clear_reason(provider, data, reason):
    error = import_errors(provider, data)
    assert reason in error.fields()["file"][0]


def test_ten_megabytes_of_garbage_is_refused_before_parsing(provider):
    error = import_errors(provider, os.urandom(10 * 1024 * 1024))
    assert "limit is 5 MB" in error.fields()["file"][0]


def test_a_buyer_organization_cannot_import(catalog):
    from django.core.exceptions import ValidationError

    from tests.factories import OrganizationFactory

    with pytest.raises(ValidationError):
        services.nodes_import_csv(organization=OrganizationFactory(kind="buyer"), data=b"x")


def test_the_template_is_a_valid_import_for_the_cluster(provider):
    # Given the template downloaded for a cluster, when it is imported as is, then both example rows import
    nodes = services.nodes_import_csv(organization=provider.organization, data=node_import_template(cluster=provider.cluster).encode())
    assert [node.hostname for node in nodes] == ["gpu-a-001", "gpu-a-002"]


# --- over HTTP ---------------------------------------------------------------------------------


def test_the_api_imports_a_multipart_upload(provider, api):
    response = api.post("/api/nodes/import/", {"file": SimpleUploadedFile("nodes.csv", csv_of(provider.cluster.pk, 50))}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json() == {"imported": 50, "devices": 400}


def test_the_api_imports_a_text_csv_body(provider, api):
    response = api.post("/api/nodes/import/", csv_of(provider.cluster.pk, 3), content_type="text/csv")
    assert response.status_code == 201, response.content
    assert response.json()["imported"] == 3


def test_the_api_reports_bad_rows_in_the_one_error_shape(provider, api):
    data = csv_of(provider.cluster.pk, 5).replace(b"gpu-0003,", b"gpu 3,")
    response = api.post("/api/nodes/import/", {"file": SimpleUploadedFile("n.csv", data)}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == ["row 5"]
    assert error["fields"]["row 5"][0].startswith("hostname: 'gpu 3' is not a valid hostname")
    assert not Node.objects.filter(hostname__startswith="gpu-").exists()


def test_a_ten_megabyte_garbage_upload_answers_413_not_500(provider, api):
    garbage = SimpleUploadedFile("big.csv", os.urandom(10 * 1024 * 1024))
    response = api.post("/api/nodes/import/", {"file": garbage}, format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["fields"] == {"file": ["At most 5 MB."]}
    raw = api.post("/api/nodes/import/", os.urandom(10 * 1024 * 1024), content_type="text/csv")
    assert raw.status_code == 413
    assert Node.objects.count() == 1


def test_a_ten_megabyte_json_body_answers_413_in_the_error_shape(api):
    response = api.post("/api/sites/", '{"name": "' + "x" * (10 * 1024 * 1024) + '"}', content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_the_import_job_page_shows_every_bad_row_and_imports_nothing(provider, client):
    client.force_login(provider.user)
    data = csv_of(provider.cluster.pk, 10).replace(b"gpu-0004,", b"gpu-0004x,").replace(b"2048,15360,Xeon 8480+\ngpu-0007", b"lots,15360,Xeon 8480+\ngpu-0007")
    response = client.post("/provider/nodes/import/", {"file": SimpleUploadedFile("n.csv", data)})
    # The rows are checked by the import job (its worker run: tests/inventory/test_node_import_jobs.py);
    # here it runs in-process, through the same service its task calls.
    assert response.status_code == 302
    job_id = int(response["Location"].strip("/").split("/")[-1])
    assert services.nodes_import_job_run(job_id=job_id) == "failed"
    body = client.get(response["Location"]).content.decode()
    assert "Nothing was imported: 1 bad row" in body
    assert "&#x27;lots&#x27; is not a whole number" in body
    assert not Node.objects.filter(hostname__startswith="gpu-").exists()


def test_the_import_page_refuses_ten_megabytes_of_garbage_next_to_the_field(provider, client):
    client.force_login(provider.user)
    response = client.post("/provider/nodes/import/", {"file": SimpleUploadedFile("big.csv", os.urandom(10 * 1024 * 1024))})
    assert response.status_code == 400
    assert 'data-field="file"' in response.content.decode()
    assert "the limit is 5 MB" in response.content.decode()


def test_the_template_downloads_as_csv(provider, client):
    client.force_login(provider.user)
    response = client.get(f"/provider/nodes/import/template.csv?cluster={provider.cluster.pk}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines()[1].split(",")[1] == str(provider.cluster.pk)
