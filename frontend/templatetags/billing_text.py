"""Template tags of the billing pages that turn stored codes into the viewer's language."""

from django import template

from billing.declines import decline_reason as decline_reason_text
from billing.display import audit_reason_display, card_label_display, job_message_display

register = template.Library()


@register.inclusion_tag("billing/_decline_reason.html")
def decline_reason(code, stripe_message=""):
    """{% decline_reason attempt.decline_code attempt.failure_reason %}: our translated reason for the code,
    then Stripe's own (English) message as a secondary detail when it says something else."""
    reason = decline_reason_text(code=code or "")
    return {"reason": reason, "stripe_message": stripe_message if stripe_message and stripe_message != reason else ""}


@register.filter
def audit_reason(reason):
    """{{ change.reason|audit_reason }}: billing's own audit reasons in the viewer's language (billing.display)."""
    return audit_reason_display(reason or "")


@register.filter
def card_label(label):
    """{{ profile.payment_method_label|card_label }}: "visa ending 4242" in the viewer's language."""
    return card_label_display(label or "")


@register.filter
def job_message(message):
    """{{ job.message|job_message }}: a billing job's progress or result in the viewer's language."""
    return job_message_display(message or "")
