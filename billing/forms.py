"""Forms of the finance pages: every review action carries a required reason (it goes into the audit
row or the credit note), and a credit note's amount is typed in the major unit (yuan, dollars)."""

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=500, strip=True,
                             help_text=_("Required: kept in the invoice's audit trail."))


class CreditNoteForm(ReasonForm):
    amount = forms.DecimalField(label=_("Credit amount"), min_value=Decimal("0.01"), max_digits=14, decimal_places=2,
                                help_text=_("In the invoice's currency, e.g. 125.50 (at most what the invoice still carries)."))

    @property
    def amount_minor(self) -> int:
        # two decimal places are enforced above, so x100 is exact
        return int(self.cleaned_data["amount"] * 100)
