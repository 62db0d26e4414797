"""Why a payment failed, in the buyer's language.

Stripe answers a declined charge with a code (`card_declined`, `expired_card`, ...; PaymentAttempt.decline_code)
and an English message (PaymentAttempt.failure_reason, Invoice.payment_error). The code is what we
translate: the message is stored as Stripe wrote it (it is the record of what Stripe said) and shown
beside our text as a secondary detail where it says something else. A code we do not know gets a
generic sentence, never a blank, so the buyer always reads something in their own language.
"""

from django.utils.translation import gettext_lazy as _

# Stripe's codes (https://docs.stripe.com/declines/codes and error codes) and our own
# (`idempotency_error`, the PaymentIntent statuses billing.payments records as a code).
DECLINE_REASONS = {
    "card_declined": _("Your card was declined."),
    "generic_decline": _("Your card was declined."),
    "do_not_honor": _("Your card was declined."),
    "declined": _("Your card was declined."),
    "insufficient_funds": _("Your card has insufficient funds."),
    "expired_card": _("Your card has expired."),
    "incorrect_cvc": _("Your card's security code is incorrect."),
    "invalid_cvc": _("Your card's security code is invalid."),
    "incorrect_number": _("Your card number is incorrect."),
    "invalid_expiry_month": _("Your card's expiration month is invalid."),
    "invalid_expiry_year": _("Your card's expiration year is invalid."),
    "lost_card": _("Your card was declined."),
    "stolen_card": _("Your card was declined."),
    "fraudulent": _("Your card was declined."),
    "card_velocity_exceeded": _("Your card has exceeded its limit; try again later or use another card."),
    "processing_error": _("An error occurred while processing your card. Try again in a little bit."),
    "authentication_required": _("Your bank asks you to authenticate this payment."),
    "requires_action": _("Your bank asks you to authenticate this payment."),
    "requires_payment_method": _("The card was not charged; try again or use another card."),
    "canceled": _("The payment was cancelled."),
    "idempotency_error": _("This payment could not be resumed with the card now saved; please pay again."),
}
UNKNOWN_DECLINE = _("The payment did not go through.")


def decline_reason_for_notification(code: str) -> str:
    """decline_reason as accounts.notifications calls a formatter (positional), in the reader's language."""
    return decline_reason(code=code)


def decline_reason(*, code: str) -> str:
    """The buyer's words (in the active language) for a failed payment with Stripe's `code`."""
    return str(DECLINE_REASONS.get(code or "", UNKNOWN_DECLINE))
