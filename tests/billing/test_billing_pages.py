"""The finance, buyer and provider billing pages: who may open them, what each review action needs
and does, and that the figures they show are the figures computed directly from the documents."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from accounts.models import Membership, Organization
from billing.models import (
    BillingAccount,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceLineEvidence,
    InvoiceStatusChange,
    JournalEntry,
)
from billing.rating import round_minor
from billing.selectors import receivables_aging
from billing.services import credit_note_create, invoice_approve, invoice_set_status, platform_fee_minor
from frontend import urls_finance
from inventory.pricing import format_money
from marketplace.models import ReservationSegment
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.factories import (
    OrganizationFactory,
    UserFactory,
    member,
)

pytestmark = pytest.mark.django_db


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def finance_urls(invoice: Invoice) -> list[tuple[str, str]]:
    """Every finance page (method, path), built from the URL module so a new page is covered too."""
    line = invoice.lines.filter(kind="charge").first()
    urls = []
    for pattern in urls_finance.urlpatterns:
        assert isinstance(pattern, URLPattern)
        kwargs = {name: {"invoice_id": invoice.pk, "line_id": line.pk}[name] for name in pattern.pattern.converters}
        path = reverse(f"frontend:{pattern.name}", kwargs=kwargs)
        method = "post" if pattern.name in {"finance-invoice-approve", "finance-invoice-void", "finance-credit-note", "finance-run-billing", "finance-run-export"} else "get"
        urls.append((method, path))
    return urls


# ------------------------------------------------------------------------------------- authorization


def test_finance_pages_open_for_finance_staff_and_superusers_and_refuse_everyone_else(client, invoiced, finance_user, offer):
    draft = Invoice.objects.filter(status="draft").first()
    urls = finance_urls(draft)
    buyer_owner = member(organization=invoiced["a"], role=Membership.Role.OWNER)
    provider_owner = member(organization=offer.cluster.site.owner, role=Membership.Role.OWNER)
    superuser = UserFactory(is_superuser=True)
    states = sorted(Invoice.objects.values_list("pk", "status"))
    # anonymous visitors are sent to sign in
    for method, path in urls:
        response = getattr(client, method)(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], path
    # buyers and providers (even owners) get 403 on every page and every action, and nothing changes
    for user in (buyer_owner, provider_owner):
        client.force_login(user)
        for method, path in urls:
            assert getattr(client, method)(path, {"reason": "let me", "amount": "1.00"}).status_code == 403, (user, path)
    assert sorted(Invoice.objects.values_list("pk", "status")) == states
    # finance staff and superusers open every page
    for user in (finance_user, superuser):
        client.force_login(user)
        for method, path in urls:
            if method == "get":
                assert client.get(path).status_code == 200, path


def test_buyers_see_only_their_organizations_issued_invoices(client, invoiced):
    a, b, march_a = invoiced["a"], invoiced["b"], invoiced["march_a"]
    b_march = Invoice.objects.get(buyer=b, period_start=MARCH)
    invoice_approve(invoice=b_march, actor=None, reason="fixture")
    client.force_login(member(organization=a, role=Membership.Role.FINANCE_VIEWER))
    listing = text(client.get("/market/invoices/"))
    # A's issued March invoice is listed, A's April draft and B's invoices are not
    assert march_a.display_number in listing
    assert Invoice.objects.get(pk=b_march.pk).display_number not in listing
    assert set(map(int, re.findall(r'data-invoice="(\d+)"', listing))) == {march_a.pk}
    assert client.get(f"/market/invoices/{march_a.pk}/").status_code == 200
    own_line = march_a.lines.get(kind="charge")
    evidence = client.get(f"/market/invoices/{march_a.pk}/lines/{own_line.pk}/")
    assert evidence.status_code == 200 and text(evidence).count("<tr data-device=") == own_line.evidence.count() > 0
    a_april_draft = Invoice.objects.get(buyer=a, period_start=APRIL)
    for invoice in (a_april_draft, b_march):
        assert client.get(f"/market/invoices/{invoice.pk}/").status_code == 404
        assert client.get(f"/market/invoices/{invoice.pk}/print/").status_code == 404
        line = invoice.lines.first()
        assert client.get(f"/market/invoices/{invoice.pk}/lines/{line.pk}/").status_code == 404
    # a line of another invoice under A's invoice's URL is a 404 too
    assert client.get(f"/market/invoices/{march_a.pk}/lines/{b_march.lines.first().pk}/").status_code == 404


def test_a_member_role_without_finance_rights_and_other_kinds_get_403(client, invoiced, offer):
    client.force_login(member(organization=invoiced["a"], role=Membership.Role.MEMBER))
    assert client.get("/market/invoices/").status_code == 403
    client.force_login(member(organization=offer.cluster.site.owner, role=Membership.Role.OWNER))
    assert client.get("/market/invoices/").status_code == 403  # a provider organization has no invoices to pay
    client.force_login(member(organization=invoiced["a"], role=Membership.Role.OWNER))
    assert client.get("/provider/earnings/").status_code == 403


# ------------------------------------------------------------------------------------- review actions


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_every_review_action_needs_a_reason_and_changes_nothing_without_one(client, invoiced, finance_user, reason):
    client.force_login(finance_user)
    draft = Invoice.objects.filter(buyer=invoiced["a"], status="draft").get()
    issued = invoiced["march_a"]
    data = {} if reason is None else {"reason": reason}
    before = (sorted(Invoice.objects.values_list("pk", "status", "number")), InvoiceStatusChange.objects.count(),
              CreditNote.objects.count(), JournalEntry.objects.count())
    for path in (f"/finance/invoices/{draft.pk}/approve/", f"/finance/invoices/{draft.pk}/void/",
                 f"/finance/invoices/{issued.pk}/void/", f"/finance/invoices/{issued.pk}/credit-note/"):
        response = client.post(path, {**data, "amount": "1.00"}, follow=True)
        assert response.status_code == 200
        assert "Nothing changed" in text(response)
    after = (sorted(Invoice.objects.values_list("pk", "status", "number")), InvoiceStatusChange.objects.count(),
             CreditNote.objects.count(), JournalEntry.objects.count())
    assert after == before


def test_review_actions_refuse_a_get_and_need_the_csrf_token(invoiced, finance_user):
    from django.test import Client

    draft = Invoice.objects.filter(status="draft").first()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(finance_user)
    assert strict.get(f"/finance/invoices/{draft.pk}/approve/").status_code == 405
    assert strict.post(f"/finance/invoices/{draft.pk}/approve/", {"reason": "ok"}).status_code == 403
    assert Invoice.objects.get(pk=draft.pk).status == "draft"


def test_approving_a_draft_numbers_it_posts_it_and_writes_the_audit_rows(client, invoiced, finance_user):
    client.force_login(finance_user)
    draft = Invoice.objects.get(buyer=invoiced["b"], period_start=MARCH)
    # it is in the review queue
    assert f'data-invoice="{draft.pk}"' in text(client.get("/finance/"))
    response = client.post(f"/finance/invoices/{draft.pk}/approve/", {"reason": "Evidence matches the segments."}, follow=True)
    invoice = Invoice.objects.get(pk=draft.pk)
    assert invoice.status == "approved" and invoice.number is not None
    assert f"Invoice approved as {invoice.display_number}." in text(response)
    changes = list(invoice.status_changes.order_by("id").values_list("from_status", "to_status", "actor", "reason"))
    assert changes[-2:] == [("draft", "pending_review", finance_user.pk, "Evidence matches the segments."),
                            ("pending_review", "approved", finance_user.pk, "Evidence matches the segments.")]
    assert JournalEntry.objects.filter(invoice=invoice, kind="invoice_approved").count() == 1
    # the audit trail on the page names who and why; the queue no longer holds it
    assert finance_user.email in text(response) and "Evidence matches the segments." in text(response)
    assert f'data-invoice="{draft.pk}"' not in text(client.get("/finance/"))
    # approving again is refused and changes nothing
    client.post(f"/finance/invoices/{draft.pk}/approve/", {"reason": "again"})
    assert Invoice.objects.get(pk=draft.pk).number == invoice.number
    assert invoice.status_changes.count() == len(changes)


def test_void_and_credit_note_from_the_page(client, invoiced, finance_user):
    client.force_login(finance_user)
    issued = invoiced["march_a"]
    client.post(f"/finance/invoices/{issued.pk}/credit-note/", {"reason": "Goodwill for a slow start.", "amount": "12.34"})
    note = CreditNote.objects.get(invoice=issued)
    assert (note.amount_minor, note.reason, note.created_by) == (1234, "Goodwill for a slow start.", finance_user)
    # more than the invoice still carries is refused with the service's reason
    response = client.post(f"/finance/invoices/{issued.pk}/credit-note/", {"reason": "too much", "amount": "999999.00"}, follow=True)
    assert "Nothing changed" in text(response) and CreditNote.objects.filter(invoice=issued).count() == 1
    draft = Invoice.objects.get(buyer=invoiced["b"], period_start=APRIL, currency="USD")
    client.post(f"/finance/invoices/{draft.pk}/void/", {"reason": "Duplicate of a manual invoice."})
    assert Invoice.objects.get(pk=draft.pk).status == "void"
    assert draft.status_changes.get(to_status="void").reason == "Duplicate of a manual invoice."
    assert not InvoiceLine.objects.filter(invoice=draft, is_void=False).exists()


# ------------------------------------------------------------------------------------- evidence


def test_the_evidence_drill_down_shows_each_device_hour_of_the_line(client, invoiced, finance_user, offer):
    client.force_login(finance_user)
    invoice = invoiced["march_a"]
    line = invoice.lines.get(kind="charge")
    devices = list(line.reservation.segments.get().device_ids)
    page = text(client.get(f"/finance/invoices/{invoice.pk}/"))
    assert f'href="/finance/invoices/{invoice.pk}/lines/{line.pk}/"' in page
    body = text(client.get(f"/finance/invoices/{invoice.pk}/lines/{line.pk}/"))
    rows = re.findall(r'<tr data-device="(\d+)" data-hour="([^"]+)">.*?</td><td class="num">\d+</td><td class="num">(\d+)</td>', body)
    shown = {(int(device), datetime.fromisoformat(hour).astimezone(UTC), int(seconds)) for device, hour, seconds in rows}
    # direct computation: 8 devices, 10:30-11:00 (1800 s), 11:00-12:00 and 12:00-13:00 (3600 s) after MARCH+2h
    first = MARCH + 2 * H
    expected = {(d, first, 1800) for d in devices} | {(d, first + k * H, 3600) for d in devices for k in (1, 2)}
    assert shown == expected
    assert sum(s for _, _, s in shown) == line.card_seconds == 8 * 9000
    assert f'data-testid="evidence-seconds-total">{line.card_seconds}<' in body
    assert len(expected) == InvoiceLineEvidence.objects.filter(line=line).count()


# ------------------------------------------------------------------------------------- reports


def test_csv_export_lists_every_invoice_with_its_figures(client, invoiced, finance_user):
    client.force_login(finance_user)
    credit_note_create(invoice=invoiced["march_a"], amount_minor=500, reason="x", actor=finance_user)
    response = client.get("/finance/invoices.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    invoices = Invoice.objects.order_by("pk")
    assert [int(r["id"]) for r in rows] == [i.pk for i in invoices]
    for row, invoice in zip(rows, invoices, strict=True):
        credited = sum(n.amount_minor for n in invoice.credit_notes.all())
        assert row["number"] == invoice.display_number and row["status"] == invoice.status and row["currency"] == invoice.currency
        assert row["buyer"] == invoice.buyer.name
        assert int(row["total_minor"]) == invoice.total_minor == sum(line.amount_minor for line in invoice.lines.all())
        assert row["total"] == f"{invoice.total_minor // 100}.{invoice.total_minor % 100:02d}"
        assert (int(row["credited_minor"]), int(row["outstanding_minor"])) == (credited, invoice.total_minor - credited)
        assert int(row["lines"]) == invoice.lines.count()


def test_receivables_aging_puts_outstanding_amounts_in_the_right_buckets(client, invoiced, finance_user):
    # Given approved invoices aged 30, 61 and 91 days (the edges of their buckets), one partly credited,
    # and one paid (settled: not a receivable)
    now = timezone.now()
    for invoice in Invoice.objects.filter(status="draft"):
        invoice_approve(invoice=invoice, actor=None, reason="fixture")
    issued = list(Invoice.objects.filter(status="approved").order_by("pk"))
    assert len(issued) == 4
    ages = [30, 61, 91, 75]
    for invoice, days in zip(issued, ages, strict=True):
        Invoice.objects.filter(pk=invoice.pk).update(approved_at=now - timedelta(days=days, hours=1))
    credit_note_create(invoice=issued[1], amount_minor=100, reason="x", actor=None)
    paid = issued[3]
    invoice_set_status(invoice=paid, status="open")
    invoice_set_status(invoice=paid, status="paid")
    # direct computation
    expected: dict[str, dict[str, int]] = {}
    for invoice, days in zip(issued[:3], ages, strict=False):
        invoice.refresh_from_db()
        bucket = "0-30" if days <= 30 else "31-60" if days <= 60 else "61-90" if days <= 90 else "90+"
        owed = invoice.total_minor - sum(n.amount_minor for n in invoice.credit_notes.all())
        buckets = expected.setdefault(invoice.currency, dict.fromkeys(["0-30", "31-60", "61-90", "90+"], 0))
        buckets[bucket] += owed
    assert receivables_aging(now=now) == expected
    client.force_login(finance_user)
    body = text(client.get("/finance/aging/"))
    for currency, buckets in expected.items():
        row = body.split(f'<tr data-currency="{currency}">')[1].split("</tr>")[0]
        for bucket, amount in buckets.items():
            assert f'data-bucket="{bucket}">{format_money(amount, currency)}<' in row


def test_revenue_by_provider_model_and_hub_matches_the_issued_lines(client, invoiced, finance_user):
    for invoice in Invoice.objects.filter(status="draft").exclude(buyer=invoiced["b"], period_start=APRIL, currency="USD"):
        invoice_approve(invoice=invoice, actor=None, reason="fixture")
    client.force_login(finance_user)
    body = text(client.get("/finance/revenue/"))
    issued_lines = InvoiceLine.objects.filter(invoice__status__in=Invoice.ISSUED).select_related("provider", "invoice")

    def served_site(line):  # the site of the cards that served the line: its provider's segment
        segment = ReservationSegment.objects.filter(reservation_id=line.reservation_id, provider=line.provider).order_by("started_at").first()
        return segment.node.cluster.site, segment.node.accelerator_model

    keys = {
        "provider": lambda line: line.provider.name,
        "model": lambda line: served_site(line)[1].name,
        "hub": lambda line: (served_site(line)[0].province.hub.name
                             if served_site(line)[0].province and served_site(line)[0].province.hub else "(none)"),
    }
    for dimension, key in keys.items():
        expected: dict[tuple[str, str], int] = {}
        for line in issued_lines:
            expected[(key(line), line.invoice.currency)] = expected.get((key(line), line.invoice.currency), 0) + line.amount_minor
        table = body.split(f'data-testid="revenue-{dimension}"')[1].split("</table>")[0]
        shown = dict(((label, currency), net) for label, currency, net in
                     re.findall(r'<tr data-label="([^"]*)" data-currency="(\w+)">.*?data-testid="net">([^<]+)<', table))
        assert shown == {k: format_money(v, k[1]) for k, v in expected.items()}
    # the voided/draft USD invoice is not revenue
    assert "USD" not in body.split('data-testid="revenue-provider"')[1].split("</table>")[0]


def test_the_reconciliation_page_shows_the_ledger_agreeing(client, invoiced, finance_user):
    client.force_login(finance_user)
    assert 'data-testid="reconciliation-ok"' in text(client.get("/finance/reconciliation/"))


def test_the_printable_invoice_has_a_print_stylesheet_and_every_line(client, invoiced, finance_user):
    client.force_login(finance_user)
    invoice = invoiced["march_a"]
    body = text(client.get(f"/finance/invoices/{invoice.pk}/print/"))
    assert "@media print" in body and invoice.display_number in body
    assert body.count("<tr data-line=") == invoice.lines.count()


# ------------------------------------------------------------------------------------- buyer and provider figures


def test_spend_this_month_is_rated_like_the_invoice_will_be(client, offer):
    buyer = OrganizationFactory(kind=Organization.Kind.BUYER)
    user = member(organization=buyer, role=Membership.Role.OWNER)  # Asia/Shanghai: the billing account's zone
    local = timezone.now().astimezone(ZoneInfo("Asia/Shanghai"))
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    # served 3 cards from month start + 0s for 1h 20m 7s (an odd length, so rounding shows), and one before the month
    start = month_start
    served(buyer=buyer, offer=offer, cards=3, periods=[(start, start + timedelta(hours=1, minutes=20, seconds=7))])
    served(buyer=buyer, offer=offer, cards=1, node_index=1, periods=[(start - 5 * H, start - H)])
    client.force_login(user)
    body = text(client.get("/market/invoices/"))
    seconds = 3 * (3600 + 20 * 60 + 7)
    if timezone.now() < start + timedelta(hours=1, minutes=20, seconds=7):
        pytest.skip("the month began less than 81 minutes ago: the period is still running")
    expected = round_minor(Fraction(offer.price_per_card_hour_minor * seconds, 3600))
    assert f'data-currency="CNY">{format_money(expected, "CNY")}<' in body
    assert not BillingAccount.objects.filter(organization=buyer).exists()  # reading the page wrote nothing


def test_provider_earnings_show_the_share_of_issued_lines_and_the_ledger_payable(client, invoiced, offer):
    provider = offer.cluster.site.owner
    for invoice in Invoice.objects.filter(status="draft", currency="CNY"):
        invoice_approve(invoice=invoice, actor=None, reason="fixture")
    client.force_login(member(organization=provider, role=Membership.Role.OWNER))
    body = text(client.get("/provider/earnings/"))
    charges = InvoiceLine.objects.filter(provider=provider, kind="charge", invoice__status__in=Invoice.ISSUED)
    share = sum(line.amount_minor - platform_fee_minor(line.amount_minor) for line in charges)
    assert share > 0
    summary = body.split('data-testid="earnings-summary"')[1].split('<tr data-currency="CNY">')[1].split("</tr>")[0]
    assert f'data-testid="accrued">{format_money(share, "CNY")}<' in summary  # the ledger's payable, nothing paid out yet
    assert f'data-testid="in-transit">{format_money(0, "CNY")}<' in summary and f'data-testid="paid">{format_money(0, "CNY")}<' in summary
    shown = sum(int(m.replace(",", "").replace(".", "")) for m in re.findall(r'data-testid="share">CNY ([\d,.]+)<', body))
    assert shown == share
    # the USD provider's earnings are not on this page
    assert "USD" not in body.split('data-testid="earnings"')[1]


def test_the_review_services_refuse_a_blank_reason_whoever_calls_them(invoiced):
    from billing.services import ReviewReasonMissing, invoice_void

    draft = Invoice.objects.filter(status="draft").first()
    for action in (invoice_approve, invoice_void):
        with pytest.raises(ReviewReasonMissing):
            action(invoice=draft, actor=None, reason="  ")
    assert Invoice.objects.get(pk=draft.pk).status == "draft" and draft.status_changes.count() == 1


def test_a_moved_reservations_earnings_go_to_the_provider_and_site_that_served_it(client, invoiced, offer, moved_to):
    for invoice in Invoice.objects.filter(status="draft", currency="CNY"):
        invoice_approve(invoice=invoice, actor=None, reason="fixture")
    # the new provider sees the moved reservation under its own site, and only that
    client.force_login(member(organization=moved_to.cluster.site.owner, role=Membership.Role.OWNER))
    body = text(client.get("/provider/earnings/"))
    sites = re.findall(r'<tr data-site="([^"]*)"', body)
    assert sites == ["Ningxia Zhongwei DC"]
    line = InvoiceLine.objects.get(provider=moved_to.cluster.site.owner)
    assert line.card_seconds == 2 * 3 * 3600
    assert f'data-testid="share">{format_money(line.amount_minor - platform_fee_minor(line.amount_minor), "CNY")}<' in body
    # and the booked-on provider does not see that site at all
    client.force_login(member(organization=offer.cluster.site.owner, role=Membership.Role.OWNER))
    assert "Ningxia Zhongwei DC" not in text(client.get("/provider/earnings/"))
    # the invoice page names the serving site on that line
    client.force_login(member(organization=line.invoice.buyer, role=Membership.Role.OWNER))
    row = text(client.get(f"/market/invoices/{line.invoice_id}/")).split(f'<tr data-line="{line.pk}">')[1].split("</tr>")[0]
    assert "Ningxia Zhongwei DC" in row


def test_void_and_redraft_from_the_page_puts_the_usage_on_a_new_draft(client, invoiced, finance_user):
    client.force_login(finance_user)
    draft = Invoice.objects.get(buyer=invoiced["b"], period_start=APRIL, currency="USD")
    charged = list(draft.lines.values_list("kind", "card_seconds", "amount_minor"))
    response = client.post(f"/finance/invoices/{draft.pk}/void/", {"reason": "Rebuild after the late agent report.", "redraft": "1"},
                           follow=True)
    assert Invoice.objects.get(pk=draft.pk).status == "void"
    new = Invoice.objects.get(buyer=invoiced["b"], period_start=APRIL, currency="USD", status="draft")
    assert list(new.lines.values_list("kind", "card_seconds", "amount_minor")) == charged
    assert f"a new draft (#{new.pk}) holds its usage" in text(response)
