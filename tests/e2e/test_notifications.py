"""In the browser: the unread badge, opening a notification (marks it read), mark all read, and the
labelled preference checkboxes."""

import pytest

from accounts.models import NotificationKind, NotificationPreference
from accounts.notifications import notify
from tests.factories import DEFAULT_PASSWORD, member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_user_reads_notifications_from_the_badge_and_chooses_what_is_emailed(page):
    # Given a signed-in buyer with two unread notifications (and someone else with one)
    user = member(kind="buyer")
    notify(users=[user], kind=NotificationKind.RESERVATION_ACTIVE, title="Reservation #7 is active: your cards are ready",
           link="/accounts/ssh-keys/", dedupe_key="e2e:1")
    notify(users=[user], kind=NotificationKind.INVOICE_ISSUED, title="Invoice CNY-000001 issued: CNY 10.00", dedupe_key="e2e:2")
    notify(users=[member(kind="buyer")], kind=NotificationKind.PAYOUT_SENT, title="Not yours", dedupe_key="e2e:3")
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Then the navigation shows 2 unread
    assert page.get_by_test_id("unread-count").inner_text() == "2"
    # When they open the list and the first notification
    page.get_by_test_id("notifications-link").click()
    assert "Not yours" not in page.get_by_test_id("notifications").inner_text()
    page.locator('[data-kind="reservation_active"]').get_by_role("button", name="View").click()
    # Then they are on its page, and one is left unread
    page.wait_for_url("**/accounts/ssh-keys/")
    assert page.get_by_test_id("unread-count").inner_text() == "1"
    # And mark all read clears the badge
    page.get_by_test_id("notifications-link").click()
    page.get_by_role("button", name="Mark all read").click()
    assert page.get_by_test_id("unread-count").count() == 0

    # When they turn off the email of failed reservations on the preferences page, by its label
    page.get_by_role("link", name="Choose which you get, in the page and by email").click()
    checkbox = page.get_by_label("Reservation failed by email")
    assert checkbox.is_checked()
    checkbox.uncheck()
    page.get_by_role("button", name="Save").click()
    # Then it is saved
    assert page.get_by_label("Reservation failed by email").is_checked() is False
    assert NotificationPreference.objects.get(user=user, kind=NotificationKind.RESERVATION_FAILED).email is False
