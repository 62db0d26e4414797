"""The billing pages in Simplified Chinese (issue 10): finance's queue, invoice, aging and payouts, the
buyer's invoices and the printable invoice render with Chinese headings and translated statuses (the
glossary's terms), and a declined payment's reason reaches a Chinese-speaking buyer in Chinese, with
Stripe's own English message kept only as a secondary detail when it says something else.

The same pages in English are covered by test_billing_pages.py and test_payment_pages.py (the test client
sends no Accept-Language, so those stay English)."""

import re

import pytest
from django.template import Context, Template
from django.utils import translation

from accounts.models import Membership
from billing.display import audit_reason_display, card_label_display, job_message_display
from billing.models import Invoice, PaymentAttempt, Payout
from billing.payments import invoice_pay
from tests.billing.conftest import card_saved, open_invoice
from tests.factories import member

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


def page(client, path: str, **extra) -> str:
    response = client.get(path, **ZH, **extra)
    assert response.status_code == 200, path
    return re.sub(r"\s+", " ", response.content.decode())


def h1(body: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", body).group(1)


def test_the_finance_review_queue_reads_in_chinese(client, invoiced, finance_user):
    client.force_login(finance_user)
    body = page(client, "/finance/")
    assert h1(body) == "待审核的账单" and "<title>" in body and "财务：审核队列" in body
    # the drafts of the run are listed with their status in Chinese, never the enum value or its English label
    assert Invoice.objects.filter(status="draft").exists()
    assert '<span class="badge">草稿</span>' in body and '<span class="badge">Draft</span>' not in body
    assert "审核队列" in body and "Review queue" not in body and "Invoices to review" not in body


def test_the_finance_invoice_page_reads_in_chinese(client, invoiced, finance_user):
    invoice = invoiced["march_a"]
    client.force_login(finance_user)
    body = page(client, f"/finance/invoices/{invoice.pk}/")
    assert h1(body).startswith(f"账单 {invoice.display_number}")
    assert 'data-testid="invoice-status">已批准<' in body
    for heading in ("明细", "审核", "审计记录", "付款"):
        assert f"<h2>{heading}</h2>" in body
    # the audit trail names the statuses by their Chinese labels: draft -> pending review -> approved
    trail = body.split('data-testid="audit-trail"')[1]
    assert "<td>草稿</td>" in trail and "<td>待审核</td>" in trail and "<td>已批准</td>" in trail
    assert "pending_review" not in trail and "（新建）" in trail
    assert "开具贷项通知单" in body and "标记为已作废" in body and "Issue credit note" not in body


def test_the_aging_page_reads_in_chinese(client, invoiced, finance_user):
    client.force_login(finance_user)
    body = page(client, "/finance/aging/")
    assert h1(body) == "应收账款账龄" and "<th class=\"num\">0-30 天</th>" in body and "days" not in body


def test_the_payouts_page_reads_in_chinese_with_translated_statuses(client, invoiced, finance_user, offer):
    invoice, provider = invoiced["march_a"], offer.cluster.site.owner
    payout = Payout.objects.create(provider=provider, invoice=invoice, currency="CNY", amount_minor=85, destination="acct_zh",
                                   idempotency_key=f"payout-invoice-{invoice.pk}-provider-{provider.pk}-1", status="in_transit")
    client.force_login(finance_user)
    body = page(client, "/finance/payouts/")
    assert h1(body) == "给算力提供方的结算付款"
    row = body.split(f'<tr data-payout="{payout.pk}" data-status="in_transit">')[1].split("</tr>")[0]
    assert ">在途</span>" in row and "In transit" not in body
    totals = body.split('data-testid="payout-totals"')[1].split("</thead>")[0]
    assert all(f">{label}</th>" in totals for label in ("处理中", "在途", "已支付", "失败"))


def test_the_buyers_invoices_and_printable_invoice_read_in_chinese(client, invoiced):
    a, invoice = invoiced["a"], invoiced["march_a"]
    client.force_login(member(organization=a, role=Membership.Role.FINANCE_VIEWER))
    body = page(client, "/market/invoices/")
    assert h1(body) == f"{a.name} 的账单"
    row = body.split(f'<tr data-invoice="{invoice.pk}">')[1].split("</tr>")[0]
    assert ">已批准</span>" in row and "Approved" not in row
    printable = page(client, f"/market/invoices/{invoice.pk}/print/")
    assert '<html lang="zh-hans">' in printable and h1(printable) == f"Computeflow 账单 {invoice.display_number}"
    assert "<th>时段</th>" in printable and "<th>合计</th>" in printable and "时间均为" in printable


def test_a_declined_payment_tells_a_chinese_buyer_why_in_chinese(client, stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4000000000000341")  # saves fine; every charge declined
    client.force_login(member(organization=buyer_org, role=Membership.Role.OWNER))

    response = client.post(f"/market/billing/payment/invoices/{invoice.pk}/pay/", {"return_to": "invoice"}, **ZH)

    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert (attempt.status, attempt.decline_code) == ("failed", "card_declined")  # stored as Stripe said it
    assert "declined" in attempt.failure_reason and response["Location"] == f"/market/invoices/{invoice.pk}/"
    body = page(client, response["Location"])
    # the message after the redirect and the invoice's payment slot say it in Chinese
    assert f"账单 {invoice.display_number} 付款失败，未变为已支付：您的银行卡被拒付。 （Stripe：{attempt.failure_reason}）" in body
    slot = body.split('data-testid="payment-slot"')[1].split("</section>")[0]
    assert 'data-testid="payment-error">上次付款被拒： <span data-testid="decline-reason">您的银行卡被拒付。</span>' in slot
    # Stripe's English words are kept beside ours as a detail, never instead of them
    assert f'data-testid="decline-detail">（Stripe：{attempt.failure_reason}）</span>' in slot
    assert ">待支付</span>" in slot and ">失败</td>" in slot
    # the payment method page lists the invoice with the same reason
    listing = page(client, "/market/billing/payment/")
    row = listing.split(f'<tr data-invoice="{invoice.pk}">')[1].split("</tr>")[0]
    assert "您的银行卡被拒付。" in row and "立即支付" in row
    assert 'data-testid="card-label">visa，尾号 0341</strong>' in listing


@pytest.mark.parametrize(("language", "code", "stripe_message", "shown", "detail"), [
    # English: our words for a known code are Stripe's words, so they are not repeated
    ("en", "card_declined", "Your card was declined.", "Your card was declined.", ""),
    # English: Stripe said more than the code does (a real Stripe decline with a specific reason)
    ("en", "card_declined", "Your card has insufficient funds.", "Your card was declined.", "(Stripe: Your card has insufficient funds.)"),
    ("zh-hans", "expired_card", "Your card has expired.", "您的银行卡已过期。", "（Stripe：Your card has expired.）"),
    # a code we do not know still gets a sentence in the buyer's language
    ("zh-hans", "something_new", "Something new happened.", "付款未成功。", "（Stripe：Something new happened.）"),
])
def test_the_decline_reason_is_ours_for_the_code_with_stripes_message_as_detail(language, code, stripe_message, shown, detail):
    template = Template("{% load billing_text %}{% decline_reason code message %}")
    with translation.override(language):
        html = template.render(Context({"code": code, "message": stripe_message}))
    assert f'<span data-testid="decline-reason">{shown}</span>' in html
    assert (f'data-testid="decline-detail">{detail}</span>' in html) if detail else ("decline-detail" not in html)


@pytest.mark.parametrize(("stored", "english", "chinese"), [
    ("billing run", "billing run", "计费运行"),
    ("paid by card (pi_123)", "paid by card (pi_123)", "已支付（银行卡，pi_123）"),
    ("redraft of void invoice 7: wrong hub", "redraft of void invoice 7: wrong hub", "已作废账单 7 重新生成草稿：wrong hub"),
    # a reason finance typed is shown as typed, in any language
    ("Evidence matches the segments.", "Evidence matches the segments.", "Evidence matches the segments."),
])
def test_billings_own_audit_reasons_are_shown_in_the_viewers_language(stored, english, chinese):
    with translation.override("en"):
        assert audit_reason_display(stored) == english
    with translation.override("zh-hans"):
        assert audit_reason_display(stored) == chinese


def test_the_saved_cards_label_is_shown_in_the_viewers_language():
    with translation.override("zh-hans"):
        assert card_label_display("visa ending 0341") == "visa，尾号 0341"
        assert card_label_display("sepa_debit") == "sepa_debit"  # not a card: as stored
    with translation.override("en"):
        assert card_label_display("visa ending 0341") == "visa ending 0341"


@pytest.mark.parametrize(("stored", "chinese"), [
    ("3 draft invoices created.", "已生成 3 份账单草稿。"),
    ("Nothing was due: no invoice created.", "没有应计费的用量：未生成账单。"),
    ("1,204 invoices exported.", "已导出 1,204 张账单。"),
    ("Exporting invoices (200 of 1,204).", "正在导出账单（200 / 1,204）。"),
    ("Waiting for a worker.", "Waiting for a worker."),  # not billing's: left to accounts.jobs
])
def test_billing_jobs_messages_are_shown_in_the_viewers_language(stored, chinese):
    with translation.override("zh-hans"):
        assert job_message_display(stored) == chinese
    with translation.override("en"):
        assert job_message_display(stored) == stored


def test_the_api_gives_the_decline_in_the_requests_language_beside_stripes_words(client, stripe_settings, buyer_org, offer):
    invoice = open_invoice(buyer=buyer_org, offer=offer)
    card_saved(organization=buyer_org, number="4000000000000341")
    invoice_pay(invoice_id=invoice.pk)  # declined
    client.force_login(member(organization=buyer_org, role=Membership.Role.FINANCE_VIEWER))

    chinese = client.get("/api/payment-attempts/", {"invoice": invoice.pk}, **ZH).json()["results"][0]
    english = client.get("/api/payment-attempts/", {"invoice": invoice.pk}).json()["results"][0]

    assert chinese["decline_code"] == english["decline_code"] == "card_declined"  # the code stays as it is
    assert chinese["failure_message"] == "您的银行卡被拒付。" and english["failure_message"] == "Your card was declined."
    assert chinese["failure_reason"] == english["failure_reason"] == "Your card was declined."  # Stripe's words, as stored
