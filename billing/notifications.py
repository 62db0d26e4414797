"""What organizations' owners, admins and finance viewers are told about money (accounts.notifications
delivers it; KIND_ROLES there says who hears of which kind).

Call these inside the transaction that makes the change: the rows roll back with it and the emails
leave only on commit. Each names its event in the dedupe key, so a retried task tells no one twice.
The words are Messages (templates marked with gettext_noop, parameters kept as data): each person reads
them in their own language and zone, amounts formatted for their locale.
"""

from datetime import UTC

from django.utils.translation import gettext_noop as _

from accounts.models import NotificationKind, Organization
from accounts.notifications import Call, Message, notify
from billing.models import Invoice


def _period(invoice: Invoice) -> Message:
    """The period's days in the reader's zone, the zone named (a billing period is a local month)."""
    start, end = (value.astimezone(UTC).isoformat() for value in (invoice.period_start, invoice.period_end))
    # Translators: an invoice's billing period; the end is the first day after it.
    return Message(_("{start} to {end} ({zone})"), {"start": Call("date", start), "end": Call("date", end),
                                                    "zone": Call("zone", start)})


def _amount(amount_minor: int, currency: str) -> Call:
    """The amount in the reader's locale (inventory.pricing.format_money)."""
    return Call("money", amount_minor, currency)


def invoice_issued_notify(*, invoice: Invoice) -> None:
    """The buyer's invoice was issued (approved, then open): told once, whichever comes first."""
    notify(
        organization=invoice.buyer, kind=NotificationKind.INVOICE_ISSUED,
        title=Message(_("Invoice {number} issued: {money}"),
                      {"number": invoice.display_number, "money": _amount(invoice.total_minor, invoice.currency)}),
        body=Message(_("For {period}."), {"period": _period(invoice)}),
        dedupe_key=f"invoice:{invoice.pk}:issued",
    )


def payment_failed_notify(*, invoice: Invoice, attempt: str, code: str = "") -> None:
    """A payment of the buyer's invoice failed. `attempt` names the attempt (e.g. the Stripe
    PaymentIntent or charge id), so each failed attempt is told once however often its webhook comes.
    `code` is the decline code: each reader gets our sentence for it in their language (Stripe's own
    English text stays on the invoice page, as a detail)."""
    notify(
        organization=invoice.buyer, kind=NotificationKind.PAYMENT_FAILED,
        title=Message(_("Payment of invoice {number} failed ({money})"),
                      {"number": invoice.display_number, "money": _amount(invoice.total_minor, invoice.currency)}),
        body=Message(_("{reason} Check the payment method of your organization; the invoice stays open."),
                     {"reason": Call("decline", code)}),
        dedupe_key=f"invoice:{invoice.pk}:payment-failed:{attempt}",
    )


def payout_sent_notify(*, provider: Organization, payout_ref: str, amount_minor: int, currency: str, link: str = "") -> None:
    """A payout left for the provider. `payout_ref` is the payout's own id (ours or Stripe's): told once."""
    notify(
        organization=provider, kind=NotificationKind.PAYOUT_SENT,
        title=Message(_("Payout of {money} sent"), {"money": _amount(amount_minor, currency)}),
        body=Message(_("Payout {reference}."), {"reference": payout_ref}), link=link,
        dedupe_key=f"payout:{payout_ref}:sent",
    )
