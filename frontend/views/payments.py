"""The buyer's payment page (/market/billing/payment/): the card Stripe charges for the organization's
invoices, saved through Stripe.js (the card number goes from the browser to Stripe, never here), and
the open invoices with a "Pay now" button and the reason of the last declined attempt.

Who: members whose role may both read finances and spend (owner, admin: "view_finance" + "book");
everyone else gets a 404 like any page of another organization."""

import stripe
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.selectors import user_can
from billing.declines import decline_reason
from billing.display import card_label_display
from billing.models import PaymentAttempt
from billing.payments import (
    PaymentMethodRefused,
    PaymentRefused,
    invoice_pay,
    payment_method_save,
    payment_method_setup_start,
)
from billing.selectors import billing_profile_of, invoices_payable


def _require_payer(request):
    organization = getattr(request, "organization", None)
    if organization is None or not all(user_can(user=request.user, organization=organization, action=action)
                                       for action in ("view_finance", "book")):
        raise Http404
    return organization


def _stripe_js_url() -> str:
    return settings.STRIPE_JS_URL or f"{settings.STRIPE_API_BASE.rstrip('/')}/js.stripe.com/v3/"


@login_required
def payment_method(request):
    organization = _require_payer(request)
    try:
        setup = payment_method_setup_start(organization=organization)
    except stripe.StripeError:
        # Stripe unreachable: the page still shows the saved card and what is owed; only the form waits.
        setup = None
    return render(request, "billing/payment_method.html", {
        "profile": billing_profile_of(organization=organization),
        "invoices": invoices_payable(organization=organization),
        "setup": setup,
        "stripe_js_url": _stripe_js_url(),
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
    })


@login_required
@require_POST
def payment_method_saved(request):
    organization = _require_payer(request)
    try:
        profile = payment_method_save(organization=organization, setup_intent_id=request.POST.get("setup_intent", ""))
    except PaymentMethodRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Saved: %(card_label)s. It pays your open invoices.") % {"card_label": card_label_display(profile.payment_method_label)})
    return redirect("frontend:billing-payment-method")


def _back(request, invoice_id: int):
    # "Pay now" is on the invoice page and on the payment page: the answer is shown where it was pressed.
    if request.POST.get("return_to") == "invoice":
        return redirect("frontend:market-invoice", invoice_id=invoice_id)
    return redirect("frontend:billing-payment-method")


@login_required
@require_POST
def invoice_pay_now(request, invoice_id: int):
    organization = _require_payer(request)
    invoice = invoices_payable(organization=organization).filter(pk=invoice_id).first()
    if invoice is None:
        raise Http404
    try:
        attempt = invoice_pay(invoice_id=invoice.pk)
    except PaymentRefused as exc:
        messages.error(request, str(exc))
        return _back(request, invoice.pk)
    if attempt is None or attempt.status == PaymentAttempt.Status.SUCCEEDED:
        messages.success(request, _("Invoice %(number)s is paid.") % {"number": invoice.display_number})
    elif attempt.status == PaymentAttempt.Status.FAILED:
        # Our words for Stripe's code, then Stripe's own (English) message where it says something else
        reason = decline_reason(code=attempt.decline_code)
        if attempt.failure_reason and attempt.failure_reason != reason:
            reason = f'{reason} {_("(Stripe: %(message)s)") % {"message": attempt.failure_reason}}'
        messages.error(request, _("Invoice %(number)s was not paid: %(reason)s") % {"number": invoice.display_number, "reason": reason})
    else:
        messages.info(request, _("The payment of invoice %(number)s is being processed.") % {"number": invoice.display_number})
    return _back(request, invoice.pk)
