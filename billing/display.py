"""Texts billing stores in English, shown in the viewer's language at display time.

Some words are written once and kept as the record: the reasons billing itself puts in an invoice's audit
trail ("billing run", "paid by card (pi_...)") and the card label Stripe's answer gave ("visa ending
4242"). They stay English in the database (an audit row never changes); these functions recognise the
ones billing writes and say them in the active language. Anything else (a reason typed by finance) is
shown as it was written.
"""

import re

from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

# Exactly the fixed reasons of billing.services / billing.payments (keep in step with them).
SYSTEM_REASONS = {
    "billing run": _("billing run"),
    "sent for collection: the buyer pays it": _("sent for collection: the buyer pays it"),
    "nothing owed: credited in full": _("nothing owed: credited in full"),
    "payout run": _("payout run"),
    "transfer reversed at Stripe": _("transfer reversed at Stripe"),  # also a payout's failure_reason
}
# The reasons with a value in them: (pattern over the stored text, translated text with its named groups).
SYSTEM_REASON_PATTERNS = [
    (re.compile(r"paid by card \((?P<ref>[^()]*)\)"), _("paid by card (%(ref)s)")),
    (re.compile(r"redraft of void invoice (?P<invoice>\d+): (?P<reason>.*)", re.DOTALL),
     _("redraft of void invoice %(invoice)s: %(reason)s")),
]
# billing.payments.payment_method_save writes f"{card.brand} ending {card.last4}"
CARD_LABEL = re.compile(r"(?P<brand>\S+) ending (?P<last4>\d{4})")


def audit_reason_display(reason: str) -> str:
    """An audit row's reason in the active language when billing wrote it; as typed otherwise."""
    if reason in SYSTEM_REASONS:
        return str(SYSTEM_REASONS[reason])
    for pattern, text in SYSTEM_REASON_PATTERNS:
        match = pattern.fullmatch(reason)
        if match:
            return str(text) % match.groupdict()
    return reason


def card_label_display(label: str) -> str:
    """The saved card's label ("visa ending 4242") in the active language; another label as stored."""
    match = CARD_LABEL.fullmatch(label or "")
    # Translators: a saved card, e.g. "visa ending 4242" (the card brand, then its last four digits).
    return str(_("%(brand)s ending %(last4)s")) % match.groupdict() if match else label


# The progress and result messages billing's jobs store on accounts.Job (billing.services billing_run_job_run,
# invoice_export_job_run, billing_run; billing.selectors.invoice_export_rows). A worker writes them with no
# viewer, so in English; the finance runs page says them in the viewer's language.
def _count(text: str) -> int:
    return int(text.replace(",", ""))


JOB_MESSAGES = [
    (re.compile(r"(?P<n>[\d,]+) draft invoices? created\."),
     lambda m: ngettext("%(count)s draft invoice created.", "%(count)s draft invoices created.", _count(m["n"])) % {"count": m["n"]}),
    (re.compile(r"Nothing was due: no invoice created\."), lambda m: gettext("Nothing was due: no invoice created.")),
    (re.compile(r"(?P<n>[\d,]+) invoices? exported\."),
     lambda m: ngettext("%(count)s invoice exported.", "%(count)s invoices exported.", _count(m["n"])) % {"count": m["n"]}),
    (re.compile(r"Invoicing month (?P<n>\d+) of (?P<total>\d+)\."),
     lambda m: gettext("Invoicing month %(n)s of %(total)s.") % m.groupdict()),
    (re.compile(r"Exporting invoices \((?P<done>[\d,]+) of (?P<total>[\d,]+)\)\."),
     lambda m: gettext("Exporting invoices (%(done)s of %(total)s).") % m.groupdict()),
    (re.compile(r"(?P<n>[\d,]+) invoice\(s\) so far"),
     lambda m: ngettext("%(count)s invoice so far", "%(count)s invoices so far", _count(m["n"])) % {"count": m["n"]}),
    (re.compile(r"(?P<n>[\d,]+) invoice\(s\)"),
     lambda m: ngettext("%(count)s invoice", "%(count)s invoices", _count(m["n"])) % {"count": m["n"]}),
]


def job_message_display(message: str) -> str:
    """A billing job's stored message in the active language; any other message as stored."""
    for pattern, say in JOB_MESSAGES:
        match = pattern.fullmatch(message or "")
        if match:
            return say(match)
    return message
