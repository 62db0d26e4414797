"""The webhook endpoint over real HTTP (live_server), the inbox and its processing in a real Celery worker,
with the events localstripe really emitted, re-signed and delivered as Stripe would (and badly)."""

import hashlib
import hmac
import json
import random
import time

import pytest
import requests

import billing.payments
from billing import stripe_gateway
from billing.models import Invoice, JournalEntry, PaymentAttempt, StripeEvent
from billing.payments import invoice_pay
from billing.services import ledger_reconcile
from tests.billing.conftest import card_saved, open_invoice
from tests.conftest import STRIPE_TEST_KEYS
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def signed(payload: bytes, secret: str = STRIPE_TEST_KEYS["STRIPE_WEBHOOK_SECRET"], at: int | None = None) -> str:
    """Stripe's signature header: t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<raw body>")."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def deliver(url: str, payload: bytes, signature: str) -> requests.Response:
    return requests.post(f"{url}/stripe/webhook/", data=payload, timeout=10,
                         headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature})


def stripe_events(since: int, **filters) -> list[dict]:
    """The events localstripe emitted since `since` (this test's: the session's localstripe is shared)."""
    listed = stripe_gateway.client().v1.events.list(params={"limit": 100, "created": {"gte": since}, **filters})
    return [event.to_dict() for event in listed.data]


def wait_processed(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while StripeEvent.objects.filter(status=StripeEvent.Status.RECEIVED).exists():
        assert time.monotonic() < deadline, "the worker did not process the stored events"
        time.sleep(0.2)


def test_one_payment_from_ten_shuffled_deliveries_of_the_same_event_and_a_forged_one(
        stripe_settings, celery_worker_process, live_server, offer, monkeypatch):
    since = int(time.time()) - 1
    buyer = OrganizationFactory()
    invoice = open_invoice(buyer=buyer, offer=offer)
    card_saved(organization=buyer, number="4242424242424242")
    # The worker crashed right after Stripe charged the card: the attempt is pending, only the webhook can tell.
    monkeypatch.setattr(billing.payments, "payment_attempt_apply_intent", lambda **kw: (_ for _ in ()).throw(RuntimeError("worker died")))
    with pytest.raises(RuntimeError):
        invoice_pay(invoice_id=invoice.pk)
    monkeypatch.undo()
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.status == PaymentAttempt.Status.PENDING and attempt.stripe_payment_intent_id == ""
    # Another buyer's declined payment, for other events in the stream
    other = OrganizationFactory()
    other_invoice = open_invoice(buyer=other, offer=offer)
    card_saved(organization=other, number="4000000000000341")
    invoice_pay(invoice_id=other_invoice.pk)

    succeeded = [e for e in stripe_events(since, type="payment_intent.succeeded")
                 if e["data"]["object"]["metadata"].get("payment_attempt_id") == str(attempt.pk)]
    assert len(succeeded) == 1
    the_event = json.dumps(succeeded[0]).encode()
    others = [json.dumps(e).encode() for e in stripe_events(since) if e["id"] != succeeded[0]["id"]]
    assert any(b"payment_intent.payment_failed" in e for e in others) and any(b"customer.created" in e for e in others)
    # Out of order: a stale "failed" event about the same PaymentIntent (a fresh event id), arriving after it succeeded
    stale = dict(succeeded[0], id="evt_stale_failure_0001", type="payment_intent.payment_failed")
    deliveries = [(the_event, signed(the_event)) for _ in range(10)]
    deliveries += [(e, signed(e)) for e in others]
    deliveries.append((json.dumps(stale).encode(), signed(json.dumps(stale).encode())))
    forged = json.dumps(dict(succeeded[0], id="evt_forged_0001")).encode()
    deliveries.append((forged, signed(forged, secret="whsec_not_the_secret")))
    random.Random(7).shuffle(deliveries)

    answers = [deliver(live_server.url, payload, signature) for payload, signature in deliveries]
    assert len(others) < 100  # the whole stream fitted in one page of the events list

    bad = [a for a in answers if a.status_code == 400]
    assert len(bad) == 1 and bad[0].json()["error"]["code"] == "bad_signature"
    assert all(a.status_code == 200 for a in answers if a not in bad)
    assert not StripeEvent.objects.filter(event_id="evt_forged_0001").exists()
    assert StripeEvent.objects.filter(event_id=succeeded[0]["id"]).count() == 1
    assert StripeEvent.objects.count() == len(others) + 2  # each event once; the forged one not at all
    wait_processed()
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == PaymentAttempt.Status.SUCCEEDED and attempt.stripe_payment_intent_id == succeeded[0]["data"]["object"]["id"]
    assert invoice.status == Invoice.Status.PAID and invoice.payment_error == ""
    assert JournalEntry.objects.filter(kind="payment").count() == 1  # exactly one payment recorded
    assert JournalEntry.objects.filter(kind="payment", invoice=invoice).count() == 1
    assert PaymentAttempt.objects.filter(status="succeeded").count() == 1
    other_invoice.refresh_from_db()
    assert other_invoice.status == Invoice.Status.OPEN and "declined" in other_invoice.payment_error
    assert not StripeEvent.objects.filter(status=StripeEvent.Status.FAILED).exists()
    assert ledger_reconcile() == []


def test_a_badly_signed_or_stale_or_unsigned_delivery_is_a_400_and_stores_nothing(stripe_settings, live_server):
    payload = json.dumps({"id": "evt_x", "object": "event", "type": "payment_intent.succeeded",
                          "data": {"object": {"id": "pi_x", "object": "payment_intent"}}}).encode()
    assert deliver(live_server.url, payload, signed(payload, secret="whsec_wrong")).status_code == 400
    assert deliver(live_server.url, payload, signed(payload, at=int(time.time()) - 3600)).status_code == 400  # replayed
    assert deliver(live_server.url, payload, "").status_code == 400
    assert deliver(live_server.url, payload + b" ", signed(payload)).status_code == 400  # body changed after signing
    assert requests.get(f"{live_server.url}/stripe/webhook/", timeout=10).status_code == 405
    assert not StripeEvent.objects.exists()


def test_an_event_of_a_type_billing_does_not_handle_is_stored_once_and_ignored(stripe_settings, live_server):
    from billing.payments import stripe_event_process

    payload = json.dumps({"id": "evt_plan_1", "object": "event", "type": "plan.created",
                          "data": {"object": {"id": "plan_1", "object": "plan"}}}).encode()
    assert deliver(live_server.url, payload, signed(payload)).status_code == 200
    assert deliver(live_server.url, payload, signed(payload)).status_code == 200
    event = StripeEvent.objects.get()
    assert stripe_event_process(event_pk=event.pk).status == StripeEvent.Status.IGNORED


def test_a_credit_note_on_a_paid_invoice_is_refunded_by_the_worker_after_commit(stripe_settings, celery_worker_process, offer):
    from billing.models import Refund
    from billing.services import credit_note_create

    buyer = OrganizationFactory()
    invoice = open_invoice(buyer=buyer, offer=offer)
    card_saved(organization=buyer, number="4242424242424242")
    invoice_pay(invoice_id=invoice.pk)

    note = credit_note_create(invoice=Invoice.objects.get(pk=invoice.pk), amount_minor=500, reason="late start", actor=None)

    deadline = time.monotonic() + 30
    while not Refund.objects.filter(credit_note=note, status="succeeded").exists():
        assert time.monotonic() < deadline, "the worker did not refund the credit note"
        time.sleep(0.2)
    refund = Refund.objects.get(credit_note=note)
    assert refund.amount_minor == 500 and refund.stripe_refund_id.startswith("re_")
    assert stripe_gateway.refund_retrieve(refund_id=refund.stripe_refund_id).amount == 500
    assert ledger_reconcile() == []
