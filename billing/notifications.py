"""What organizations' owners, admins and finance viewers are told about money (accounts.notifications
delivers it; KIND_ROLES there says who hears of which kind).

Call these inside the transaction that makes the change: the rows roll back with it and the emails
leave only on commit. Each names its event in the dedupe key, so a retried task tells no one twice.
"""

from accounts.models import NotificationKind, Organization
from accounts.notifications import notify
from billing.models import Invoice
from inventory.pricing import format_money


def _period(invoice: Invoice) -> str:
    return f"{invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d} (UTC)"


def invoice_issued_notify(*, invoice: Invoice) -> None:
    """The buyer's invoice was issued (approved, then open): told once, whichever comes first."""
    notify(
        organization=invoice.buyer, kind=NotificationKind.INVOICE_ISSUED,
        title=f"Invoice {invoice.display_number} issued: {format_money(invoice.total_minor, invoice.currency)}",
        body=f"For {_period(invoice)}.",
        dedupe_key=f"invoice:{invoice.pk}:issued",
    )


def payment_failed_notify(*, invoice: Invoice, attempt: str, reason: str = "") -> None:
    """A payment of the buyer's invoice failed. `attempt` names the attempt (e.g. the Stripe
    PaymentIntent or charge id), so each failed attempt is told once however often its webhook comes."""
    notify(
        organization=invoice.buyer, kind=NotificationKind.PAYMENT_FAILED,
        title=f"Payment of invoice {invoice.display_number} failed ({format_money(invoice.total_minor, invoice.currency)})",
        body=reason or "Check the payment method of your organization; the invoice stays open.",
        dedupe_key=f"invoice:{invoice.pk}:payment-failed:{attempt}",
    )


def payout_sent_notify(*, provider: Organization, payout_ref: str, amount_minor: int, currency: str, link: str = "") -> None:
    """A payout left for the provider. `payout_ref` is the payout's own id (ours or Stripe's): told once."""
    notify(
        organization=provider, kind=NotificationKind.PAYOUT_SENT,
        title=f"Payout of {format_money(amount_minor, currency)} sent",
        body=f"Payout {payout_ref}.", link=link,
        dedupe_key=f"payout:{payout_ref}:sent",
    )
