"""POST /stripe/webhook/: Stripe's deliveries. The signature is checked on the raw body (never on
re-serialized JSON); the event is stored once by its id and the answer is 200 at once - the work is a
Celery task after commit (billing.payments.stripe_event_process). A bad signature is a 400 and stores
nothing. Not part of the REST API (Stripe is the only client; it reads the status code only)."""

import stripe
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.payments import stripe_event_receive


@csrf_exempt  # Stripe cannot send our CSRF token; its signature is the authentication
@require_POST
def stripe_webhook(request):
    try:
        event = stripe_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except (ValueError, stripe.SignatureVerificationError):
        return JsonResponse({"error": {"code": "bad_signature", "message": "The Stripe signature does not match this payload."}},
                            status=400)
    return JsonResponse({"received": event.event_id})
