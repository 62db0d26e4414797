"""A reservation failing emails its buyer's people through a real Celery worker, after the commit.

The worker is a separate process started with Django's file-based email backend (the real mail API,
writing each message to a file), on a private broker so no other worker takes the task.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import Membership, Notification
from marketplace.models import Reservation
from marketplace.services import reservation_create, reservation_set_status
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, OrganizationFactory, member


def _messages(directory) -> str:
    return "".join(path.read_text() for path in sorted(directory.glob("*.log")))


@pytest.mark.django_db(transaction=True)
def test_a_reservation_failing_is_emailed_by_the_worker(catalog, private_broker, celery_worker_factory, tmp_path, monkeypatch):
    outbox = tmp_path / "mail"
    monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    monkeypatch.setenv("EMAIL_FILE_PATH", str(outbox))
    celery_worker_factory(broker_url=private_broker.url, name="notify-worker")

    buyer = OrganizationFactory()
    owner = member(organization=buyer, role=Membership.Role.OWNER)
    finance = member(organization=buyer, role=Membership.Role.FINANCE_VIEWER)
    outsider = member()  # another organization
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    reservation, _ = reservation_create(organization=buyer, created_by=owner, offer=OfferFactory(cluster=cluster),
                                        card_count=1, start=start, end=start + timedelta(hours=2))

    # when the reservation fails (committed: this test is transactional, the service's atomic block commits)
    reservation_set_status(reservation=reservation, status=Reservation.Status.FAILED, reason="no node could boot it")

    # then the worker sends the owner's email and marks it sent
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Notification.objects.filter(user=owner, email=Notification.Email.SENT).exists():
            break
        time.sleep(0.2)
    sent = Notification.objects.get(user=owner)
    assert sent.email == Notification.Email.SENT and sent.email_sent_at is not None
    text = _messages(outbox)
    assert f"To: {owner.email}" in text
    assert f"Subject: Computeflow: Reservation #{reservation.pk}" in text and "failed" in text
    assert "no node could boot it" in text and f"/market/reservations/{reservation.pk}/" in text
    # and nobody else: the finance viewer does not hear of machines, the other organization of nothing
    assert finance.email not in text and outsider.email not in text
    assert text.count("Subject: ") == 1
