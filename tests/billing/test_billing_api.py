"""The billing API is read-only and scoped: a buyer's owners, admins and finance viewers read its issued
invoices and credit notes; members without finance rights, other organizations and strangers do not;
platform finance staff read everything, drafts included."""

import pytest
from rest_framework.test import APIClient

from accounts.models import Membership
from billing.models import Invoice
from billing.services import billing_run, credit_note_create, invoice_set_status
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.factories import OrganizationFactory, UserFactory, member, staff_group

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def books(offer):
    """Two buyers with a March invoice each: buyer A's approved (with a credit note), buyer B's a draft."""
    a, b = OrganizationFactory(), OrganizationFactory()
    served(buyer=a, offer=offer, periods=[(MARCH + H, MARCH + 3 * H)])
    served(buyer=b, offer=offer, periods=[(MARCH + H, MARCH + 2 * H)], node_index=1)
    served(buyer=a, offer=offer, periods=[(APRIL + H, APRIL + 2 * H)])  # April: not invoiced yet (a draft of A after the next run)
    billing_run(now=APRIL + 2 * H)
    issued = Invoice.objects.get(buyer=a)
    invoice_set_status(invoice=issued, status="pending_review")
    issued = invoice_set_status(invoice=issued, status="approved")
    credit_note_create(invoice=issued, amount_minor=1000, reason="late hand-over", actor=None)
    return {"a": a, "b": b, "issued": issued, "draft": Invoice.objects.get(buyer=b)}


@pytest.mark.parametrize("role", [Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.FINANCE_VIEWER])
def test_a_buyers_finance_roles_read_its_issued_invoices_with_lines_and_credit_notes(books, role):
    client = client_for(member(organization=books["a"], role=role))
    body = client.get("/api/invoices/").json()
    assert [row["id"] for row in body["results"]] == [books["issued"].pk]
    [row] = body["results"]
    assert row["number"] == "CNY-000001" and row["status"] == "approved"
    assert row["total_minor"] == sum(line["amount_minor"] for line in row["lines"]) == 8 * 2 * 2500
    assert [note["number"] for note in row["credit_notes"]] == ["CN-CNY-000001"]
    assert client.get(f"/api/invoices/{books['issued'].pk}/").json()["lines"][0]["card_seconds"] == 8 * 7200
    assert [note["amount_minor"] for note in client.get("/api/credit-notes/").json()["results"]] == [1000]


def test_a_member_without_finance_rights_is_refused_in_the_one_error_shape(books):
    client = client_for(member(organization=books["a"], role=Membership.Role.MEMBER))
    for url in ("/api/invoices/", f"/api/invoices/{books['issued'].pk}/", "/api/credit-notes/"):
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def test_another_organizations_invoice_and_an_own_draft_are_not_found(books):
    other = client_for(member(organization=books["b"]))
    assert other.get("/api/invoices/").json()["results"] == []  # B's only invoice is a draft
    assert other.get(f"/api/invoices/{books['issued'].pk}/").status_code == 404
    assert other.get(f"/api/invoices/{books['draft'].pk}/").status_code == 404
    assert other.get("/api/credit-notes/").json()["results"] == []


def test_strangers_get_nothing(books):
    assert APIClient().get("/api/invoices/").status_code in (401, 403)
    assert APIClient().get(f"/api/invoices/{books['issued'].pk}/").status_code in (401, 403)
    provider_owner = member(kind="provider")
    assert client_for(provider_owner).get("/api/invoices/").json()["results"] == []


def test_finance_staff_read_every_invoice_drafts_included(books):
    finance = UserFactory()
    finance.groups.add(staff_group("finance"))
    client = client_for(finance)
    ids = {row["id"] for row in client.get("/api/invoices/").json()["results"]}
    assert ids == {books["issued"].pk, books["draft"].pk}
    assert client.get(f"/api/invoices/{books['draft'].pk}/").json()["status"] == "draft"
    assert len(client.get("/api/credit-notes/").json()["results"]) == 1


def test_the_api_is_read_only(books):
    client = client_for(member(organization=books["a"]))
    assert client.post("/api/invoices/", {}).status_code == 405
    assert client.delete(f"/api/invoices/{books['issued'].pk}/").status_code == 405


def test_the_evidence_behind_a_line_is_readable_by_its_buyer_only(books):
    from billing.models import InvoiceLineEvidence

    line = books["issued"].lines.get()
    mine = client_for(member(organization=books["a"], role=Membership.Role.FINANCE_VIEWER))
    rows = mine.get("/api/invoice-evidence/", {"line": line.pk, "page_size": 200}).json()["results"]
    assert len(rows) == InvoiceLineEvidence.objects.filter(line=line).count() == 8 * 2  # 8 cards x 2 hours
    assert sum(row["billable_seconds"] for row in rows) == line.card_seconds
    assert mine.get("/api/invoice-evidence/", {"invoice": books["draft"].pk}).json()["results"] == []
    other = client_for(member(organization=books["b"]))
    assert other.get("/api/invoice-evidence/", {"line": line.pk}).json()["results"] == []
    bad = mine.get("/api/invoice-evidence/", {"line": "x"})
    assert bad.status_code == 400 and "line" in bad.json()["error"]["fields"]


def test_ids_beyond_a_bigint_are_a_400_or_a_404_never_a_500(books):
    client = client_for(member(organization=books["a"]))
    assert client.get("/api/invoice-evidence/", {"line": str(2**63)}).status_code == 400
    assert client.get(f"/api/invoices/{2**63}/").status_code == 404
