"""In a real browser: a provider signs in, creates a site and a cluster, imports 200 nodes from CSV and
sees them; a CSV with one bad row is refused with the row number and the reason, and nothing is imported.
The import runs on a real Celery worker; its page follows the job in the browser (fetch) until the result."""

from pathlib import Path

import pytest

from accounts.models import Membership, Organization
from inventory.models import Cluster, Device, Node, NodeAgentToken, Site
from tests.factories import DEFAULT_PASSWORD, OrganizationFactory, catalog_loaded, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HEADER = "hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb,cpu_model"


def nodes_csv(cluster_id: int, count: int = 200) -> bytes:
    rows = [f"gz-gpu-{i:03d},{cluster_id},nvidia-h100-sxm5-80gb,8,128,2048,15360,Xeon 8480+" for i in range(count)]
    return ("\n".join([HEADER, *rows]) + "\n").encode()


@pytest.fixture
def provider_user():
    catalog_loaded()
    organization = OrganizationFactory(name="Guizhou Compute", kind=Organization.Kind.PROVIDER)
    return member(organization=organization, role=Membership.Role.OWNER)


def sign_in(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector('[data-testid="signed-in-as"]')


def test_a_provider_creates_a_site_and_cluster_and_imports_200_nodes(page, provider_user, celery_worker_process):
    # Given a signed-in provider
    sign_in(page, provider_user)
    page.get_by_role("link", name="My sites").click()

    # When they create a site (an error first: an impossible PUE is shown next to the field)
    page.get_by_role("link", name="New site").click()
    page.get_by_label("Name", exact=True).fill("Gui'an Data Center 1")
    page.get_by_label("Province", exact=True).select_option(label="Guizhou (Guizhou hub)")
    page.get_by_label("City", exact=True).fill("Gui'an")
    page.get_by_label("Lifecycle", exact=True).select_option("online")
    page.get_by_label("PUE", exact=True).fill("0.5")
    page.get_by_role("button", name="Create site").click()
    assert page.locator('.field-error[data-field="pue"]').inner_text() == "Ensure this value is greater than or equal to 1."
    page.get_by_label("PUE", exact=True).fill("1.20")
    page.get_by_role("button", name="Create site").click()
    page.wait_for_selector("text=Site 'Gui'an Data Center 1' created.")

    # and a cluster
    page.get_by_role("link", name="New cluster").click()
    page.get_by_label("Name", exact=True).fill("ib-a")
    page.get_by_label("Fabric", exact=True).select_option("infiniband")
    page.get_by_label("Fabric bandwidth (Gbit/s per node)").fill("400")
    page.get_by_role("button", name="Create cluster").click()
    page.wait_for_selector("text=Cluster 'ib-a' created.")
    cluster = Cluster.objects.get(name="ib-a", site__name="Gui'an Data Center 1")

    # and import 200 nodes from a CSV
    page.get_by_role("link", name="Import nodes").first.click()
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "nodes.csv", "mimeType": "text/csv", "buffer": nodes_csv(cluster.pk)}]
    )
    page.get_by_role("button", name="Import").click()

    # Then the job's page follows the import to its end by itself, and links to the cluster
    page.wait_for_selector('[data-testid="job"][data-status="done"]', timeout=60_000)
    assert page.get_by_test_id("job-message").inner_text() == "Imported 200 nodes (1,600 cards)."
    assert page.get_by_test_id("job-progress-label").inner_text() == "400 of 400 (100%)"
    page.get_by_test_id("job-result-link").click()

    # where they see the 200 nodes
    assert page.get_by_test_id("node-count").inner_text() == "200 nodes"
    assert page.locator('[data-testid="nodes"] tbody tr').count() == 200
    assert page.locator('[data-testid="nodes"]').get_by_text("gz-gpu-199").is_visible()
    assert Node.objects.filter(cluster=cluster).count() == 200
    assert Device.objects.filter(node__cluster=cluster).count() == 1600

    # When they tick two nodes and ask for their agent keys, the browser downloads them as CSV
    page.get_by_label("Select gz-gpu-000").check()
    page.get_by_label("Select gz-gpu-001").check()
    with page.expect_download() as ticked:
        page.get_by_role("button", name="Agent keys for the ticked nodes").click()
    lines = Path(ticked.value.path()).read_text().splitlines()
    assert lines[0] == "hostname,node_id,token"
    assert [line.split(",")[0] for line in lines[1:]] == ["gz-gpu-000", "gz-gpu-001"]
    # and one more click gives a key to every other node, once
    with page.expect_download() as rest:
        page.get_by_role("button", name="Agent keys for every node without one").click()
    assert len(Path(rest.value.path()).read_text().splitlines()) == 1 + 198
    assert NodeAgentToken.objects.filter(node__cluster=cluster).count() == 200

    # and the site page counts the cards by model and status, with the 14-day utilization panel
    page.get_by_role("link", name="← Gui'an Data Center 1").click()
    assert "1600" in page.get_by_test_id("cards-by-model").inner_text()
    assert page.locator(".pv-util-day").count() == 14


def test_a_csv_with_one_bad_row_is_refused_with_its_row_number_and_nothing_is_imported(page, provider_user, celery_worker_process):
    # Given a provider with a site and a cluster
    organization = provider_user.memberships.get().organization
    site = Site.objects.create(owner=organization, name="Qingyang 1", lifecycle=Site.Lifecycle.ONLINE)
    cluster = Cluster.objects.create(site=site, name="roce-1", fabric="roce", fabric_bandwidth_gbps=200)
    sign_in(page, provider_user)

    # When they upload 200 rows where row 138 names a model that is not in the catalog
    lines = nodes_csv(cluster.pk).decode().splitlines()
    lines[137] = lines[137].replace("nvidia-h100-sxm5-80gb", "h100-pro-max")
    page.goto("/provider/nodes/import/")
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "nodes.csv", "mimeType": "text/csv", "buffer": "\n".join(lines).encode()}]
    )
    page.get_by_role("button", name="Import").click()

    # Then the job's page shows the file refused, with the row number and the reason
    report = page.get_by_test_id("import-report")
    report.wait_for(timeout=60_000)
    assert "Nothing was imported: 1 bad row" in report.inner_text()
    row = report.locator('tr[data-row="138"]')
    assert row.locator("td").nth(0).inner_text() == "138"
    assert row.locator("td").nth(1).inner_text() == "accelerator_model"
    assert "unknown accelerator model 'h100-pro-max'" in row.locator("td").nth(2).inner_text()
    assert "nothing was imported" in page.get_by_test_id("job-message").inner_text()
    assert page.get_by_test_id("job").get_attribute("data-status") == "failed"
    # and nothing was imported
    assert not Node.objects.filter(cluster=cluster).exists()
