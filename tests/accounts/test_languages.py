"""Chinese and English per person: the switcher keeps the choice on the account, sign-in brings it back,
sign-up keeps the page's language, the stored language applies when the browser has no cookie; the
same event reaches each person in their own language and time zone; API errors keep their code and
speak the client's language."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone, translation
from django.utils.translation import gettext_noop
from rest_framework.test import APIClient

from accounts.jobs import job_run
from accounts.models import Job, Membership, Notification, NotificationKind, User
from accounts.notifications import Choice, Message, notification_preferences_set, notify
from accounts.timezones import format_local_time
from billing.models import Invoice
from billing.notifications import invoice_issued_notify
from config.celery import app as celery_app
from frontend.templatetags.display import when
from tests.factories import DEFAULT_PASSWORD, OrganizationFactory, member

pytestmark = pytest.mark.django_db

ZH = "zh-hans"
COOKIE = settings.LANGUAGE_COOKIE_NAME


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


# --- the person's language -------------------------------------------------------------------------------------------


def test_the_switcher_keeps_a_signed_in_persons_choice_on_their_account(client):
    user = member()
    client.force_login(user)
    response = client.post("/i18n/setlang/", {"language": ZH, "next": "/accounts/notifications/"})
    assert response.status_code == 302 and response["Location"] == "/accounts/notifications/"
    assert response.cookies[COOKIE].value == ZH
    user.refresh_from_db()
    assert user.language == ZH


def test_the_switcher_for_a_visitor_sets_only_the_cookie_and_refuses_an_unknown_language(client):
    response = client.post("/i18n/setlang/", {"language": ZH, "next": "/"})
    assert response.cookies[COOKIE].value == ZH
    user = member()
    client.force_login(user)
    client.post("/i18n/setlang/", {"language": "tlh", "next": "/"})  # Klingon is not offered
    # nor French, though Django has a catalog for it: the switch answers as usual and stores nothing
    assert client.post("/i18n/setlang/", {"language": "fr", "next": "/"}).status_code == 302
    user.refresh_from_db()
    assert user.language == ""
    # a code written in another case is the same language
    assert client.post("/i18n/setlang/", {"language": "zh-Hans", "next": "/"}).status_code == 302
    user.refresh_from_db()
    assert user.language == ZH


def test_the_stored_language_applies_without_a_cookie_and_the_cookie_wins_over_it():
    user = member()
    User.objects.filter(pk=user.pk).update(language=ZH)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    page = client.get("/accounts/notifications/").content.decode()
    assert '<html lang="zh-hans">' in page and "退出登录" in page and "Sign out" not in page
    client.cookies[COOKIE] = "en"  # chosen in this browser since: the most recent choice
    assert '<html lang="en">' in client.get("/accounts/notifications/").content.decode()


def test_signing_in_restores_the_stored_language_as_the_cookie():
    user = member()
    User.objects.filter(pk=user.pk).update(language=ZH)
    response = Client().post("/accounts/login/", {"username": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response.cookies[COOKIE].value == ZH


def test_signing_up_keeps_the_language_the_page_was_shown_in():
    data = {"password": "a-long-unusual-passphrase", "kind": "buyer"}
    Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").post(
        "/accounts/signup/", {**data, "full_name": "李伟", "email": "li@example.test", "organization_name": "深度初创"})
    Client().post("/accounts/signup/", {**data, "full_name": "Ann", "email": "ann@example.test", "organization_name": "Ann Co"})
    assert User.objects.get(email="li@example.test").language == ZH
    assert User.objects.get(email="ann@example.test").language == "en"
    # and a new person in China reads times in Asia/Shanghai
    assert User.objects.get(email="li@example.test").time_zone == "Asia/Shanghai"


def test_the_preferences_page_sets_the_language_and_shows_the_kinds_translated(client):
    user = member()
    client.force_login(user)
    response = client.post("/accounts/notifications/preferences/", {"language": ZH, "time_zone": "Asia/Urumqi"}, follow=True)
    user.refresh_from_db()
    assert user.language == ZH and client.cookies[COOKIE].value == ZH and user.time_zone == "Asia/Urumqi"
    page = response.content.decode()
    assert "语言和时区设置已保存。" in page and "时间以 Asia/Urumqi 时区显示。" in page
    assert "账单已开具" in page and "预订运行中" in page and "Invoice issued" not in page
    # back to following the browser: the choice and the cookie are gone
    client.post("/accounts/notifications/preferences/", {"language": "", "time_zone": "Asia/Shanghai"})
    user.refresh_from_db()
    assert user.language == "" and client.cookies[COOKIE].value == "" and user.time_zone == "Asia/Shanghai"
    # a zone that is not one is refused next to its field
    response = client.post("/accounts/notifications/preferences/", {"language": "en", "time_zone": "Mars/Olympus"})
    assert response.status_code == 200 and "time_zone" in response.context["language_form"].errors


# --- notifications in each reader's language and zone ---------------------------------------------------------------


@pytest.fixture
def readers():
    """One organization, two owners: one reads Chinese in Shanghai, one English in New York."""
    organization = OrganizationFactory()
    zh = member(organization=organization, role=Membership.Role.OWNER)
    en = member(organization=organization, role=Membership.Role.OWNER)
    User.objects.filter(pk=zh.pk).update(language=ZH, time_zone="Asia/Shanghai")
    User.objects.filter(pk=en.pk).update(language="en", time_zone="America/New_York")
    return organization, zh, en


@pytest.fixture
def eager_celery():
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_the_same_event_reaches_each_person_in_their_language_and_zone(readers, django_capture_on_commit_callbacks, eager_celery):
    organization, zh, en = readers
    for person in (zh, en):  # "ending soon" is not emailed by default: both asked for it
        notification_preferences_set(user=person, choices={NotificationKind.RESERVATION_ENDING_SOON: Choice(email=True, in_page=True)})
    end = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, 20:00 the day before in New York
    with django_capture_on_commit_callbacks(execute=True):
        # the words marketplace.notifications uses for "ending soon" (a Message per reader, not finished English)
        notify(organization=organization, kind=NotificationKind.RESERVATION_ENDING_SOON, dedupe_key="r:1:ending",
               title=Message(gettext_noop("{subject} ends at {end}"), {"subject": "R1", "end": end}),
               body=Message(gettext_noop("Extend it from its page to keep the cards; your machines stop at the end.")),
               link="/market/reservations/1/")
    zh_row, en_row = Notification.objects.get(user=zh), Notification.objects.get(user=en)
    assert en_row.title == "R1 ends at 2026-12-09 20:00 EST"
    assert zh_row.title == "R1将于 2026-12-10 09:00 CST 结束"
    assert has_chinese(zh_row.body) and not has_chinese(en_row.body)
    # the emails: subject, body and footer in the recipient's language
    emails = {message.to[0]: message for message in mail.outbox}
    assert emails[en.email].subject == "Computeflow: R1 ends at 2026-12-09 20:00 EST"
    assert "Choose which notifications you get" in emails[en.email].body
    assert emails[zh.email].subject == "Computeflow：R1将于 2026-12-10 09:00 CST 结束"
    assert "选择您接收哪些通知" in emails[zh.email].body and "Choose which" not in emails[zh.email].body
    # and the in-page list shows each their own words
    client = Client()
    client.force_login(zh)
    page = client.get("/accounts/notifications/").content.decode()
    assert "R1将于 2026-12-10 09:00 CST 结束" in page and "预订即将结束" in page


def test_money_in_a_notification_is_formatted_for_each_reader(readers):
    organization, zh, en = readers
    period = datetime(2026, 3, 1, tzinfo=UTC)
    invoice = Invoice.objects.create(buyer=organization, currency="CNY", period_start=period,
                                     period_end=period + timedelta(days=31), total_minor=164000)
    invoice_issued_notify(invoice=invoice)
    assert Notification.objects.get(user=en).title == f"Invoice {invoice.display_number} issued: CNY 1,640.00"
    assert Notification.objects.get(user=zh).title == f"账单 {invoice.display_number} 已开具：¥1,640.00"
    # the period in each reader's zone, the zone named
    assert Notification.objects.get(user=zh).body == "账期：2026-03-01 至 2026-04-01（CST）。"
    assert Notification.objects.get(user=en).body == "For 2026-02-28 to 2026-03-31 (EST)."


def test_a_person_without_a_language_is_written_to_in_the_sites_default(readers):
    organization, zh, en = readers
    User.objects.filter(pk=zh.pk).update(language="")
    notify(organization=organization, kind=NotificationKind.PAYOUT_SENT, dedupe_key="p", title=Message(gettext_noop("Payout {reference}."), {"reference": "P1"}))
    assert Notification.objects.get(user=zh).title == "Payout P1."


# --- times ------------------------------------------------------------------------------------------------------------


def test_times_have_the_same_shape_and_zone_name_in_chinese():
    value = datetime(2026, 12, 10, 1, 0, tzinfo=UTC)
    with translation.override(ZH):
        assert format_local_time(value, tz=ZoneInfo("Asia/Shanghai")) == "2026-12-10 09:00 CST"
        with timezone.override(ZoneInfo("Asia/Shanghai")):
            assert when(value) == "2026-12-10 09:00 CST"
            assert when(value, "seconds") == "2026-12-10 09:00:00 CST"


# --- API errors -------------------------------------------------------------------------------------------------------


def _error(response):
    return response.status_code, response.json()["error"]


@pytest.mark.parametrize("request_", [
    # DRF's own message (not signed in): from DRF's zh_Hans catalog
    lambda api: api.get("/api/notifications/"),
    # ours, in config/api.py: a URL no route matches
    lambda api: api.get("/api/no-such-thing/"),
])
def test_the_same_bad_api_request_keeps_status_and_code_and_speaks_the_clients_language(request_):
    english = _error(request_(APIClient()))
    chinese = _error(request_(APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans")))
    assert english[0] == chinese[0] and english[1]["code"] == chinese[1]["code"]
    assert not has_chinese(english[1]["message"]) and has_chinese(chinese[1]["message"])


def test_field_errors_of_our_own_validation_are_translated_too():
    user = member()
    english, chinese = APIClient(), APIClient(HTTP_ACCEPT_LANGUAGE="zh-hans")
    for api in (english, chinese):
        api.force_authenticate(user)
    bad = {"name": "laptop", "public_key": "ssh-dss AAAAB3NzaC1kc3MAAACBAP"}
    en_status, en_error = _error(english.post("/api/ssh-keys/", bad, format="json"))
    zh_status, zh_error = _error(chinese.post("/api/ssh-keys/", bad, format="json"))
    assert en_status == zh_status == 400 and en_error["code"] == zh_error["code"] == "invalid"
    assert "DSA (ssh-dss) keys are refused" in en_error["fields"]["public_key"][0]
    assert "不接受 DSA（ssh-dss）公钥" in zh_error["fields"]["public_key"][0]
    # the pagination limit (config/api.py)
    assert "必须介于 1 和 200 之间" in _error(chinese.get("/api/ssh-keys/", {"page_size": 999}))[1]["message"]


def test_the_page_shows_a_notification_in_the_language_it_is_read_in(readers):
    # Given a notification written for the Chinese reader (rendered for her when the event happened)
    organization, zh, en = readers
    notify(users=[zh], kind=NotificationKind.PAYOUT_SENT, dedupe_key="p",
           title=Message(gettext_noop("Payout {reference}."), {"reference": "P1"}))
    assert Notification.objects.get(user=zh).title == "结算付款 P1。"
    # when she reads her list with the interface switched to English, it speaks English like the page
    client = Client()
    client.force_login(zh)
    client.cookies[COOKIE] = "en"
    assert "Payout P1." in client.get("/accounts/notifications/").content.decode()
    assert client.get("/api/notifications/").json()["results"][0]["title"] == "Payout P1."


# --- jobs and error pages ---------------------------------------------------------------------------------------------


def test_a_job_runs_in_its_owners_language_so_its_page_reads_in_it():
    # Given a queued job of a person who reads Chinese (the worker itself has no request, no language)
    organization = OrganizationFactory()
    owner = member(organization=organization)
    User.objects.filter(pk=owner.pk).update(language=ZH)
    job = Job.objects.create(owner=owner, organization=organization, kind=Job.Kind.NODE_IMPORT)
    seen = {}

    def work(job, progress):
        seen["language"] = translation.get_language()
        raise RuntimeError("boom")

    # when it runs and fails, its messages are in her language
    assert job_run(job_id=job.pk, work=work) == Job.Status.FAILED
    job.refresh_from_db()
    assert seen["language"] == ZH and has_chinese(job.message)
    assert translation.get_language() != ZH  # and the worker's own language is left as it was


def test_the_not_found_page_speaks_the_visitors_language():
    response = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").get("/no-such-page/")
    assert response.status_code == 404 and "页面不存在" in response.content.decode()
    assert "Page not found" in Client().get("/no-such-page/").content.decode()
