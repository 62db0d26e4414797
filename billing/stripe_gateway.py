"""The one place billing talks to Stripe (through the `stripe` library). Every call that creates
something carries an idempotency key chosen by the caller from its own row (deterministic), so a call
retried after a crash or a timeout is the same call at Stripe, never a second charge or transfer.

Configuration (settings): STRIPE_API_KEY, STRIPE_API_BASE (localstripe in development and tests;
https://api.stripe.com in production) and STRIPE_CONNECT_API_BASE for Connect transfers ("" = the
same base; localstripe has no Connect, so tests point it at tests/billing/stripe_connect_fake.py).
"""

import stripe
from django.conf import settings

# Network errors are retried by us (same key), not by the library behind our back.
_TIMEOUT_SECONDS = 20


def _client(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_API_KEY, base_addresses={"api": base}, max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=_TIMEOUT_SECONDS),
    )


def client() -> stripe.StripeClient:
    return _client(settings.STRIPE_API_BASE)


def connect_client() -> stripe.StripeClient:
    return _client(settings.STRIPE_CONNECT_API_BASE or settings.STRIPE_API_BASE)


def customer_create(*, organization_id: int, name: str, idempotency_key: str) -> stripe.Customer:
    return client().v1.customers.create(params={"name": name, "metadata": {"organization_id": str(organization_id)}},
                                        options={"idempotency_key": idempotency_key})


def setup_intent_create(*, customer_id: str) -> stripe.SetupIntent:
    # No idempotency key: a SetupIntent is only a form session; an unused one costs nothing.
    return client().v1.setup_intents.create(params={"customer": customer_id, "usage": "off_session"})


def setup_intent_retrieve(*, setup_intent_id: str) -> stripe.SetupIntent:
    return client().v1.setup_intents.retrieve(setup_intent_id)


def payment_method_retrieve(*, payment_method_id: str) -> stripe.PaymentMethod:
    return client().v1.payment_methods.retrieve(payment_method_id)


def payment_method_attach(*, payment_method_id: str, customer_id: str) -> stripe.PaymentMethod:
    return client().v1.payment_methods.attach(payment_method_id, params={"customer": customer_id})


def payment_intent_create_off_session(*, amount_minor: int, currency: str, customer_id: str, payment_method_id: str,
                                      metadata: dict[str, str], idempotency_key: str) -> stripe.PaymentIntent:
    """Charge the saved card now, the buyer not present (off_session + confirm). A decline raises
    stripe.CardError (its .error carries the code, the message and, at real Stripe, the PaymentIntent)."""
    return client().v1.payment_intents.create(
        params={"amount": amount_minor, "currency": currency.lower(), "customer": customer_id, "payment_method": payment_method_id,
                "confirm": True, "off_session": True, "metadata": metadata},
        options={"idempotency_key": idempotency_key},
    )


def payment_intent_retrieve(*, payment_intent_id: str) -> stripe.PaymentIntent:
    return client().v1.payment_intents.retrieve(payment_intent_id)


def refund_create(*, payment_intent_id: str, amount_minor: int, metadata: dict[str, str], idempotency_key: str) -> stripe.Refund:
    return client().v1.refunds.create(params={"payment_intent": payment_intent_id, "amount": amount_minor, "metadata": metadata},
                                      options={"idempotency_key": idempotency_key})


def refund_retrieve(*, refund_id: str) -> stripe.Refund:
    return client().v1.refunds.retrieve(refund_id)


def transfer_create(*, amount_minor: int, currency: str, destination: str, transfer_group: str, metadata: dict[str, str],
                    idempotency_key: str) -> stripe.Transfer:
    """A Connect transfer from the platform's balance to a provider's connected account."""
    return connect_client().v1.transfers.create(
        params={"amount": amount_minor, "currency": currency.lower(), "destination": destination, "transfer_group": transfer_group,
                "metadata": metadata},
        options={"idempotency_key": idempotency_key},
    )


def transfer_retrieve(*, transfer_id: str) -> stripe.Transfer:
    return connect_client().v1.transfers.retrieve(transfer_id)


def webhook_event_construct(*, payload: bytes, signature: str) -> stripe.Event:
    """The event, if `signature` is Stripe's signature of exactly these bytes with STRIPE_WEBHOOK_SECRET
    (and recent); raises stripe.SignatureVerificationError or ValueError otherwise."""
    return stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
