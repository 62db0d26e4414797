"""The finance review journey with the interface in Simplified Chinese (issue 10), in a real browser:
finance opens the draft from the review queue, approves it with a reason, and the buyer's declined card
is explained in Chinese on the invoice. The English journey is test_finance_review.py.

Both people sign in first and then choose Chinese (the switcher's cookie), so this journey depends only
on the billing pages' translations, not on the sign-in page's."""

import pytest

from accounts.models import Membership
from billing.models import Invoice
from tests.e2e.test_finance_review import fill_card, march_draft  # noqa: F401 (a fixture)
from tests.e2e.test_provider_inventory import sign_in
from tests.factories import UserFactory, member, staff_group

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def in_chinese(page, live_server) -> None:
    page.context.add_cookies([{"name": "django_language", "value": "zh-hans", "url": live_server.url}])


def test_finance_approves_a_draft_and_the_buyer_reads_the_decline_in_chinese(page, browser, live_server, march_draft, stripe_settings):  # noqa: F811
    invoice, _ = march_draft
    finance = UserFactory(email="finance-zh@example.test")
    finance.groups.add(staff_group("finance"))

    # Given finance staff signed in with the interface in Chinese, the review queue lists the draft
    sign_in(page, finance)
    in_chinese(page, live_server)
    page.goto("/finance/")
    assert page.locator("h1").inner_text() == "待审核的账单"
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    page.get_by_test_id("review-queue").get_by_role("link", name=invoice.display_number).click()
    assert page.get_by_test_id("invoice-status").inner_text() == "草稿"

    # When they approve it with a reason, by the Chinese label and button
    page.get_by_label("批准原因").fill("计费依据与服务时段一致。")
    page.get_by_role("button", name="批准", exact=True).click()

    # Then it is approved and numbered, said in Chinese, and the audit trail keeps their reason
    page.get_by_text("账单已批准，编号为 CNY-").wait_for()
    assert page.get_by_test_id("invoice-status").inner_text() == "已批准"
    assert "计费依据与服务时段一致。" in page.get_by_test_id("audit-trail").inner_text()
    invoice.refresh_from_db()
    assert invoice.status == "approved"

    # When the buyer's owner, in Chinese, saves a card that is declined when charged and presses "Pay now"
    buyer_context = browser.new_context(base_url=live_server.url)
    buyer_page = buyer_context.new_page()
    sign_in(buyer_page, member(organization=invoice.buyer, role=Membership.Role.OWNER))
    in_chinese(buyer_page, live_server)
    buyer_page.goto("/market/billing/payment/")
    fill_card(buyer_page, "4000000000000341")
    buyer_page.goto(f"/market/invoices/{invoice.pk}/")
    buyer_page.get_by_test_id("pay-now").click()

    # Then the invoice page tells them why in Chinese, and the invoice is still to be paid
    buyer_page.get_by_test_id("payment-error").wait_for()
    assert buyer_page.get_by_test_id("payment-error").get_by_test_id("decline-reason").inner_text() == "您的银行卡被拒付。"
    assert buyer_page.get_by_test_id("payment-status").inner_text().startswith("待支付")
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    buyer_context.close()
