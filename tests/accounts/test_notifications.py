"""Notifications: who is told (the right roles of the right organization, never another's), once per
event, as each user chose, with the email leaving only after the event commits; the pages and the API
show each user their own only."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import translation
from rest_framework.test import APIClient

from accounts.models import Membership, Notification, NotificationKind, NotificationPreference, Organization, User
from accounts.notifications import (
    Choice,
    notification_emails_send,
    notification_emails_sweep,
    notification_preferences_set,
    notify,
)
from billing.models import Invoice
from billing.notifications import payment_failed_notify, payout_sent_notify
from billing.services import invoice_set_status
from config.celery import app as celery_app
from marketplace.models import Reservation
from marketplace.notifications import reservations_notify_ending_soon
from marketplace.services import reservation_create, reservation_extend, reservation_set_status
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, member
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

Kind = NotificationKind
Role = Membership.Role


@dataclass
class Org:
    organization: Organization
    owner: User
    admin: User
    member: User
    finance: User


def org_with_every_role(kind=Organization.Kind.BOTH) -> Org:
    organization = OrganizationFactory(kind=kind)
    return Org(organization, *(member(organization=organization, role=role)
                               for role in (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.FINANCE_VIEWER)))


@pytest.fixture
def eager_celery():
    """Tasks run in this process when enqueued (the on-commit callbacks below call .delay); the real
    worker path is tested in test_notifications_celery.py."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def buyer():
    return org_with_every_role()


@pytest.fixture
def other():
    return org_with_every_role()


@pytest.fixture
def start():
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)


@pytest.fixture
def offer(catalog):
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, hostname="n-a")
    return OfferFactory(cluster=cluster)


def booked(offer, org: Org, start, hours=4) -> Reservation:
    reservation, _ = reservation_create(organization=org.organization, created_by=org.member, offer=offer, card_count=1,
                                        start=start, end=start + timedelta(hours=hours))
    return reservation


def told(kind=None) -> set[tuple[str, str]]:
    rows = Notification.objects.all() if kind is None else Notification.objects.filter(kind=kind)
    return {(row.user.email, row.kind) for row in rows.select_related("user")}


def emails_of(org: Org, *people: str) -> set[str]:
    return {getattr(org, person).email for person in people}


# --- who is told ---------------------------------------------------------------------------------------------------


def test_a_failed_reservation_tells_the_buyers_people_who_use_cards_and_no_one_else(offer, buyer, other, start):
    reservation = booked(offer, buyer, start)
    booked(offer, other, start)  # the other organization has a reservation too, untouched
    reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED, reason="the boot failed")

    rows = Notification.objects.filter(kind=Kind.RESERVATION_FAILED).select_related("user")
    assert {row.user.email for row in rows} == emails_of(buyer, "owner", "admin", "member")
    row = rows[0]
    assert f"Reservation #{reservation.pk}" in row.title and "failed" in row.title
    assert row.link == f"/market/reservations/{reservation.pk}/"
    assert row.body == "the boot failed"
    # and nothing for a move no one needs to hear of (requested -> failed told; cancel tells nothing)
    cancelled = booked(offer, buyer, start + timedelta(days=1))
    reservation_set_status(reservation=cancelled, status=Reservation.Status.CANCELLED)
    assert Notification.objects.filter(dedupe_key__startswith=f"reservation:{cancelled.pk}:").count() == 0


def test_active_and_migrated_are_told_with_their_own_kinds(offer, buyer, start):
    reservation = booked(offer, buyer, start)
    hand_over(reservation, at=start)
    assert told(Kind.RESERVATION_ACTIVE) == {(email, Kind.RESERVATION_ACTIVE) for email in emails_of(buyer, "owner", "admin", "member")}
    reservation_set_status(reservation=reservation, status=Reservation.Status.MIGRATING)
    reservation_set_status(reservation=reservation, status=Reservation.Status.ACTIVE, at=start + timedelta(hours=1))
    # moving away and arriving again are two events of the same kind; the return to active is not "active" again
    assert Notification.objects.filter(kind=Kind.RESERVATION_MIGRATED).count() == 2 * 3
    assert Notification.objects.filter(kind=Kind.RESERVATION_ACTIVE).count() == 3


def test_invoice_issued_tells_owners_admins_and_finance_viewers_once(buyer, other):
    period = datetime(2026, 3, 1, tzinfo=UTC)
    invoice = Invoice.objects.create(buyer=buyer.organization, currency="CNY", period_start=period,
                                     period_end=period + timedelta(days=31), total_minor=0)
    invoice_set_status(invoice=invoice, status=Invoice.Status.PENDING_REVIEW)
    assert told() == set()  # not issued yet
    invoice_set_status(invoice=invoice, status=Invoice.Status.APPROVED)
    invoice_set_status(invoice=invoice, status=Invoice.Status.OPEN)  # the same issue: told once
    assert told() == {(email, Kind.INVOICE_ISSUED) for email in emails_of(buyer, "owner", "admin", "finance")}
    assert "CNY-" in Notification.objects.first().title


def test_payment_failed_and_payout_sent_reach_their_roles(buyer, other):
    period = datetime(2026, 3, 1, tzinfo=UTC)
    invoice = Invoice.objects.create(buyer=buyer.organization, currency="CNY", period_start=period,
                                     period_end=period + timedelta(days=31), total_minor=1234)
    payment_failed_notify(invoice=invoice, attempt="pi_1", code="insufficient_funds")
    payment_failed_notify(invoice=invoice, attempt="pi_1", code="insufficient_funds")  # the webhook again
    payout_sent_notify(provider=other.organization, payout_ref="po_7", amount_minor=50000, currency="CNY")
    assert told(Kind.PAYMENT_FAILED) == {(e, Kind.PAYMENT_FAILED) for e in emails_of(buyer, "owner", "admin", "finance")}
    assert told(Kind.PAYOUT_SENT) == {(e, Kind.PAYOUT_SENT) for e in emails_of(other, "owner", "admin")}
    assert Notification.objects.get(kind=Kind.PAYOUT_SENT, user=other.owner).title == "Payout of CNY 500.00 sent"
    # the reason is our sentence for the decline code, in each reader's language (not Stripe's English)
    failed = Notification.objects.filter(kind=Kind.PAYMENT_FAILED).first()
    assert failed.shown_body.startswith("Your card has insufficient funds.")
    with translation.override("zh-hans"):
        assert "Your card" not in failed.shown_body and failed.shown_body != ""


def test_notify_refuses_an_unknown_kind_or_a_missing_dedupe_key(buyer):
    with pytest.raises(ValueError, match="Unknown notification kind"):
        notify(organization=buyer.organization, kind="reservation_exploded", title="x", dedupe_key="k")
    with pytest.raises(ValueError, match="dedupe_key"):
        notify(organization=buyer.organization, kind=Kind.PAYOUT_SENT, title="x", dedupe_key="")


def test_a_deactivated_user_is_not_told(offer, buyer, start):
    buyer.admin.is_active = False
    buyer.admin.save()
    reservation_set_status(reservation=booked(offer, buyer, start), status=Reservation.Status.FAILED)
    assert buyer.admin.email not in {email for email, _ in told()}


# --- once per event --------------------------------------------------------------------------------------------------


def test_the_same_event_told_again_is_one_row_and_one_email(buyer, django_capture_on_commit_callbacks, eager_celery):
    for _ in range(2):  # e.g. a redelivered task that notifies again in its own transaction
        with django_capture_on_commit_callbacks(execute=True):
            notify(organization=buyer.organization, kind=Kind.RESERVATION_FAILED, title="Reservation #1 failed",
                   dedupe_key="reservation:1:change:9")
    assert Notification.objects.count() == 3
    assert sorted(message.to[0] for message in mail.outbox) == sorted(emails_of(buyer, "owner", "admin", "member"))
    # and the email task run again (a redelivery) sends nothing more
    assert notification_emails_send(dedupe_key="reservation:1:change:9") == 0
    assert len(mail.outbox) == 3


def test_a_retried_transition_that_changes_nothing_tells_no_one_again(offer, buyer, start):
    reservation = booked(offer, buyer, start)
    for _ in range(2):
        reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED)
    assert Notification.objects.count() == 3


def test_ending_soon_is_told_once_per_end_and_only_within_the_hour(offer, buyer, other, start):
    reservation = booked(offer, buyer, start, hours=4)
    hand_over(reservation, at=start)
    later = booked(offer, other, start + timedelta(days=2))  # not in service: never "ending soon"
    end = reservation.end

    assert reservations_notify_ending_soon(now=end - timedelta(hours=2)) == 0
    for minutes in (55, 30, 5):  # beat runs every few minutes within the hour
        reservations_notify_ending_soon(now=end - timedelta(minutes=minutes))
    assert told(Kind.RESERVATION_ENDING_SOON) == {(e, Kind.RESERVATION_ENDING_SOON) for e in emails_of(buyer, "owner", "admin", "member")}
    title = Notification.objects.filter(kind=Kind.RESERVATION_ENDING_SOON).first().title
    # in the recipient's zone (theirs is Asia/Shanghai, the default), with the zone named
    assert f"ends at {end.astimezone(ZoneInfo('Asia/Shanghai')):%Y-%m-%d %H:%M} CST" in title
    assert not Notification.objects.filter(dedupe_key__startswith=f"reservation:{later.pk}:").exists()

    # an extension moves the end: the new end is told once more, in its own last hour
    reservation_extend(reservation=reservation, end=end + timedelta(hours=2), actor=buyer.member)
    reservations_notify_ending_soon(now=end - timedelta(minutes=5))
    assert Notification.objects.filter(kind=Kind.RESERVATION_ENDING_SOON).count() == 3
    reservations_notify_ending_soon(now=end + timedelta(hours=1, minutes=30))
    assert Notification.objects.filter(kind=Kind.RESERVATION_ENDING_SOON).count() == 6


# --- preferences ---------------------------------------------------------------------------------------------------


def test_preferences_are_respected_per_user_and_channel(offer, buyer, start, django_capture_on_commit_callbacks, eager_celery):
    notification_preferences_set(user=buyer.owner, choices={Kind.RESERVATION_FAILED: Choice(email=False, in_page=True)})
    notification_preferences_set(user=buyer.admin, choices={Kind.RESERVATION_FAILED: Choice(email=False, in_page=False)})
    notification_preferences_set(user=buyer.member, choices={Kind.RESERVATION_FAILED: Choice(email=True, in_page=False)})
    with django_capture_on_commit_callbacks(execute=True):
        reservation_set_status(reservation=booked(offer, buyer, start), status=Reservation.Status.FAILED)

    rows = {row.user_id: row for row in Notification.objects.all()}
    assert set(rows) == {buyer.owner.pk, buyer.member.pk}  # the admin turned both channels off: nothing at all
    assert rows[buyer.owner.pk].in_page and rows[buyer.owner.pk].email == Notification.Email.NONE
    assert not rows[buyer.member.pk].in_page and rows[buyer.member.pk].email == Notification.Email.SENT
    assert [message.to for message in mail.outbox] == [[buyer.member.email]]
    # the email-only row is not in the member's page list
    client = Client()
    client.force_login(buyer.member)
    assert client.get("/api/notifications/").json()["count"] == 0


def test_defaults_email_what_needs_acting_on_only(offer, buyer, start, django_capture_on_commit_callbacks, eager_celery):
    reservation = booked(offer, buyer, start)
    with django_capture_on_commit_callbacks(execute=True):
        hand_over(reservation, at=start)  # active: in the page only by default
    assert Notification.objects.filter(kind=Kind.RESERVATION_ACTIVE).count() == 3 and mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED, at=start + timedelta(hours=1))
    assert len(mail.outbox) == 3
    message = mail.outbox[0]
    assert message.subject.startswith(f"Computeflow: Reservation #{reservation.pk}")
    assert f"/market/reservations/{reservation.pk}/" in message.body and "/accounts/notifications/preferences/" in message.body


def test_preferences_refuse_an_unknown_kind(buyer):
    with pytest.raises(ValueError):
        notification_preferences_set(user=buyer.owner, choices={"nope": Choice(email=True, in_page=True)})


# --- after commit only ---------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transition_tells_no_one(catalog, django_capture_on_commit_callbacks, eager_celery):
    buyer = org_with_every_role()
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    offer = OfferFactory(cluster=cluster)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    reservation = booked(offer, buyer, start)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED)
            assert Notification.objects.count() == 3  # written in the transaction...
            raise RuntimeError("something later in the same transaction failed")
    assert Notification.objects.count() == 0 and mail.outbox == []  # ...and gone with it, no email left

    # the same move committed: told and emailed
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED)
            assert mail.outbox == []  # not before the commit
    assert Notification.objects.count() == 3 and len(mail.outbox) == 3


def test_the_sweeper_sends_emails_whose_task_was_lost_and_only_those(buyer):
    # given an event committed whose email task never ran (its on-commit callback is never executed here)
    notify(organization=buyer.organization, kind=Kind.RESERVATION_FAILED, title="Reservation #3 failed", dedupe_key="lost")
    # when the sweeper runs before the grace period, nothing goes (the task may still be on its way)
    assert notification_emails_sweep() == 0
    # and once the rows are older than it, every pending email goes, once
    Notification.objects.update(created_at=datetime.now(UTC) - timedelta(minutes=10))
    assert notification_emails_sweep() == 3
    assert notification_emails_sweep() == 0
    assert sorted(message.to[0] for message in mail.outbox) == sorted(emails_of(buyer, "owner", "admin", "member"))


# --- pages ---------------------------------------------------------------------------------------------------------


def _note(user, key, **extra):
    notify(users=[user], kind=extra.pop("kind", Kind.RESERVATION_ACTIVE), title=extra.pop("title", f"About {key}"),
           dedupe_key=key, **extra)
    return Notification.objects.get(user=user, dedupe_key=key)


def test_the_page_lists_my_own_with_the_unread_badge(buyer, other):
    mine = _note(buyer.owner, "a", title="Mine, unread")
    _note(buyer.owner, "b", title="Mine, read")
    Notification.objects.filter(dedupe_key="b").update(read_at=datetime.now(UTC))
    _note(other.owner, "c", title="Someone else's")
    client = Client()
    client.force_login(buyer.owner)
    body = client.get("/accounts/notifications/").content.decode()
    assert "Mine, unread" in body and "Mine, read" in body and "Someone else" not in body
    assert 'data-testid="unread-count" aria-label="1 unread">1<' in body
    assert f'data-id="{mine.pk}"' in body


def test_mark_read_and_mark_all_read_are_posts_with_csrf_on_my_own_only(buyer, other):
    mine = _note(buyer.owner, "a", link="/market/reservations/1/")
    _note(buyer.owner, "b")
    theirs = _note(other.owner, "c")
    client = Client(enforce_csrf_checks=True)
    client.force_login(buyer.owner)
    assert client.get(f"/accounts/notifications/{mine.pk}/read/").status_code == 405
    assert client.post(f"/accounts/notifications/{mine.pk}/read/").status_code == 403  # no CSRF token
    client.get("/accounts/notifications/")
    token = client.cookies["csrftoken"].value
    assert client.post(f"/accounts/notifications/{theirs.pk}/read/", {"csrfmiddlewaretoken": token}).status_code == 404
    # opening it marks it read and goes to its page
    response = client.post(f"/accounts/notifications/{mine.pk}/read/", {"csrfmiddlewaretoken": token, "open": "1"})
    assert response.status_code == 302 and response["Location"] == "/market/reservations/1/"
    mine.refresh_from_db()
    assert mine.read_at is not None
    assert client.post("/accounts/notifications/read-all/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert not Notification.objects.filter(user=buyer.owner, read_at__isnull=True).exists()
    assert Notification.objects.get(pk=theirs.pk).read_at is None  # someone else's untouched
    assert 'data-testid="unread-count"' not in client.get("/accounts/notifications/").content.decode()


def test_the_preferences_page_has_a_labelled_checkbox_per_kind_and_channel_and_saves(buyer):
    client = Client()
    client.force_login(buyer.owner)
    body = client.get("/accounts/notifications/preferences/").content.decode()
    for kind in Kind.values:
        for channel in ("in_page", "email"):
            assert f'<label for="id_{kind}__{channel}">' in body
    assert 'id="id_reservation_failed__email" checked' in body  # the default
    data = {f"{kind}__in_page": "on" for kind in Kind.values}  # every email off
    assert client.post("/accounts/notifications/preferences/", data).status_code == 302
    saved = {row.kind: (row.in_page, row.email) for row in NotificationPreference.objects.filter(user=buyer.owner)}
    assert saved == {kind: (True, False) for kind in Kind.values}
    assert 'id="id_reservation_failed__email" checked' not in client.get("/accounts/notifications/preferences/").content.decode()


def test_the_pages_need_a_signed_in_user():
    client = Client()
    for url in ("/accounts/notifications/", "/accounts/notifications/preferences/"):
        assert client.get(url)["Location"].startswith("/accounts/login/")


# --- API -----------------------------------------------------------------------------------------------------------


def test_the_api_lists_my_own_and_marks_read(buyer, other):
    mine = _note(buyer.owner, "a", title="Mine")
    theirs = _note(other.owner, "b")
    client = APIClient()
    client.force_authenticate(buyer.owner)
    body = client.get("/api/notifications/").json()
    assert [row["title"] for row in body["results"]] == ["Mine"]
    assert set(body["results"][0]) == {"id", "kind", "title", "body", "link", "created_at", "read_at"}

    missing = client.post(f"/api/notifications/{theirs.pk}/read/")
    assert missing.status_code == 404 and "error" in missing.json()
    first = client.post(f"/api/notifications/{mine.pk}/read/").json()
    assert first["read_at"] is not None
    assert client.post(f"/api/notifications/{mine.pk}/read/").json()["read_at"] == first["read_at"]  # twice: harmless
    assert client.get("/api/notifications/", {"unread": "true"}).json()["count"] == 0
    assert client.get("/api/notifications/").json()["count"] == 1
