"""Template tags of the billing pages that turn stored codes into the viewer's language."""

from django import template

from billing.declines import decline_reason as decline_reason_text

register = template.Library()


@register.inclusion_tag("billing/_decline_reason.html")
def decline_reason(code, stripe_message=""):
    """{% decline_reason attempt.decline_code attempt.failure_reason %}: our translated reason for the code,
    then Stripe's own (English) message as a secondary detail when it says something else."""
    reason = decline_reason_text(code=code or "")
    return {"reason": reason, "stripe_message": stripe_message if stripe_message and stripe_message != reason else ""}
