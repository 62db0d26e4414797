"""Billing pages: finance staff (/finance/: review queue, invoice review with evidence, approve / void /
credit note, print, CSV, receivables aging, revenue, reconciliation, payouts), buyers (/market/invoices/: their
organization's issued invoices and this month's spend) and providers (/provider/earnings/).

Thin: each view checks who may look, then calls one billing selector or service. Finance pages are for
platform finance staff only (the `finance` group or superusers, as billing's API decides): anyone else
gets 403. Buyers and providers see their active organization's figures only, and need a role that may
read its finances (owner, admin, finance viewer); another organization's invoice is a 404.
"""

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.selectors import user_can, user_is_finance_staff
from billing import selectors
from billing.forms import CreditNoteForm, ReasonForm
from billing.models import Invoice, LedgerAccount, Payout
from billing.services import (
    CreditNoteRefused,
    InvoiceStateError,
    ReviewReasonMissing,
    credit_note_create,
    invoice_approve,
    invoice_redraft,
    invoice_void,
    ledger_reconcile,
    local_month_start,
)

EVIDENCE_PER_PAGE = 500
INVOICES_PER_PAGE = 50
PAYOUTS_ON_EARNINGS = 100  # the newest; the API lists them all
# The revenue page's tables: (dimension of selectors.revenue_by, column label, heading)
REVENUE_TABLES = [
    ("provider", gettext_lazy("Provider"), gettext_lazy("By provider")),
    ("model", gettext_lazy("Accelerator model"), gettext_lazy("By accelerator model")),
    ("hub", gettext_lazy("National hub"), gettext_lazy("By national hub")),
]


def _finance(request) -> None:
    if not user_is_finance_staff(user=request.user):
        raise PermissionDenied(_("Finance pages are for the platform's finance staff."))


def _finance_invoice(invoice_id: int) -> Invoice:
    return selectors.invoice_get(organization=None, viewer_is_finance=True, invoice_id=invoice_id)


def _page(request, items, per_page: int):
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def _payment_error_code(attempts) -> str:
    """The decline code behind Invoice.payment_error: that of the newest failed attempt (attempts come newest first)."""
    return next((attempt.decline_code for attempt in attempts if attempt.status == "failed"), "")


def _evidence_context(request, *, invoice: Invoice, line_id: int) -> dict:
    # `invoice` is already scoped to the viewer (finance: any; a buyer: their issued ones), and the line
    # must belong to it, so reading its evidence unscoped shows nothing the viewer may not see.
    line = selectors.invoice_line_get(invoice=invoice, line_id=line_id)
    evidence = selectors.invoice_evidence_list(organization=None, viewer_is_finance=True, invoice_id=invoice.pk, line_id=line.pk)
    return {"invoice": invoice, "line": line, "page": _page(request, evidence, EVIDENCE_PER_PAGE),
            "billable_seconds_total": selectors.evidence_billable_seconds(evidence=evidence)}


# --------------------------------------------------------------------------------------------- finance


@login_required
def finance_queue(request):
    _finance(request)
    return render(request, "billing/finance_queue.html", {"invoices": selectors.invoice_review_queue()})


@login_required
def finance_invoices(request):
    _finance(request)
    invoices = selectors.invoice_list(organization=None, viewer_is_finance=True)
    status = request.GET.get("status", "")
    if status in Invoice.Status.values:
        invoices = invoices.filter(status=status)
    else:
        status = ""
    return render(request, "billing/finance_invoices.html",
                  {"page": _page(request, invoices, INVOICES_PER_PAGE), "status": status, "statuses": Invoice.Status.choices})


@login_required
def finance_invoice(request, invoice_id: int):
    _finance(request)
    invoice = _finance_invoice(invoice_id)
    attempts = list(selectors.payment_attempt_list(organization=None, viewer_is_finance=True, invoice_id=invoice.pk))
    return render(request, "billing/finance_invoice.html", {
        "invoice": invoice, "lines": selectors.invoice_lines_with_context(invoice=invoice),
        "changes": invoice.status_changes.select_related("actor"), "outstanding": selectors.invoice_outstanding_minor(invoice=invoice),
        "attempts": attempts, "payment_error_code": _payment_error_code(attempts),
        "reason_form": ReasonForm(), "credit_note_form": CreditNoteForm(),
        "can_approve": invoice.status in selectors.REVIEW_STATUSES,
        "can_void": bool(Invoice.TRANSITIONS.get(invoice.status, frozenset()) & {Invoice.Status.VOID}),
        "can_credit": invoice.status in Invoice.ISSUED,
    })


@login_required
def finance_line_evidence(request, invoice_id: int, line_id: int):
    _finance(request)
    context = _evidence_context(request, invoice=_finance_invoice(invoice_id), line_id=line_id)
    context["back"] = f"/finance/invoices/{invoice_id}/"
    return render(request, "billing/line_evidence.html", context)


@login_required
def finance_invoice_print(request, invoice_id: int):
    _finance(request)
    invoice = _finance_invoice(invoice_id)
    return _print(request, invoice)


def _print(request, invoice: Invoice) -> HttpResponse:
    return render(request, "billing/invoice_print.html", {"invoice": invoice, "lines": selectors.invoice_lines_with_context(invoice=invoice),
                                                          "outstanding": selectors.invoice_outstanding_minor(invoice=invoice)})


def _review_action(request, invoice_id: int, action) -> HttpResponse:
    """Run one review action with the reason typed on the page; a missing reason or a refused move
    changes nothing and is shown on the invoice page."""
    _finance(request)
    invoice = _finance_invoice(invoice_id)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Nothing changed: a reason is required."))
        return redirect("frontend:finance-invoice", invoice_id=invoice.pk)
    try:
        done = action(invoice=invoice, actor=request.user, reason=form.cleaned_data["reason"])
    except (InvoiceStateError, ReviewReasonMissing) as error:
        messages.error(request, _("Nothing changed: %(error)s") % {"error": error})
    else:
        messages.success(request, done)
    return redirect("frontend:finance-invoice", invoice_id=invoice.pk)


@login_required
@require_POST
def finance_invoice_approve(request, invoice_id: int):
    def approve(**kwargs):
        invoice = invoice_approve(**kwargs)
        return _("Invoice approved as %(number)s.") % {"number": invoice.display_number}
    return _review_action(request, invoice_id, approve)


@login_required
@require_POST
def finance_invoice_void(request, invoice_id: int):
    def void(**kwargs):
        if request.POST.get("redraft"):
            draft = invoice_redraft(**kwargs)
            number = kwargs["invoice"].display_number
            if draft:
                return _("Invoice %(number)s is void; a new draft (#%(draft)s) holds its usage.") % {"number": number, "draft": draft.pk}
            return _("Invoice %(number)s is void; nothing was left to bill.") % {"number": number}
        invoice = invoice_void(**kwargs)
        return _("Invoice %(number)s is void.") % {"number": invoice.display_number}
    return _review_action(request, invoice_id, void)


@login_required
@require_POST
def finance_credit_note(request, invoice_id: int):
    _finance(request)
    invoice = _finance_invoice(invoice_id)
    form = CreditNoteForm(request.POST)
    if not form.is_valid():
        # Translators: a field of the credit note form, then what is wrong with it.
        problems = " ".join(_("%(field)s: %(errors)s") % {"field": form.fields[name].label or name, "errors": " ".join(errors)}
                            for name, errors in form.errors.items())
        messages.error(request, _("Nothing changed: %(error)s") % {"error": problems})
        return redirect("frontend:finance-invoice", invoice_id=invoice.pk)
    try:
        note = credit_note_create(invoice=invoice, amount_minor=form.amount_minor, reason=form.cleaned_data["reason"], actor=request.user)
    except CreditNoteRefused as error:
        messages.error(request, _("Nothing changed: %(error)s") % {"error": error})
    else:
        messages.success(request, _("Credit note %(number)s issued.") % {"number": note.display_number})
    return redirect("frontend:finance-invoice", invoice_id=invoice.pk)


@login_required
def finance_invoices_csv(request):
    _finance(request)
    # The column headers stay English in every language: the file is read by spreadsheets and importers
    # that look columns up by name (selectors.invoice_export_rows; the background export writes the same).
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="invoices-{timezone.now():%Y%m%d}.csv"'
    writer = csv.writer(response)
    for row in selectors.invoice_export_rows():
        writer.writerow(row)
    return response


@login_required
def finance_aging(request):
    _finance(request)
    return render(request, "billing/finance_aging.html",
                  {"aging": selectors.receivables_aging(now=timezone.now()), "buckets": [b[0] for b in selectors.AGING_BUCKETS]})


@login_required
def finance_revenue(request):
    _finance(request)
    return render(request, "billing/finance_revenue.html",
                  {"tables": [(key, label, heading, selectors.revenue_by(dimension=key)) for key, label, heading in REVENUE_TABLES]})


@login_required
def finance_reconciliation(request):
    _finance(request)
    # (account, currency, balance): the account as its LedgerAccount, so the page shows its label, never the raw key
    balances = [(LedgerAccount(account), currency, balance) for (account, currency), balance in sorted(selectors.ledger_balances().items())]
    return render(request, "billing/finance_reconciliation.html",
                  {"problems": ledger_reconcile(), "balances": balances, "checked_at": timezone.now()})


@login_required
def finance_payouts(request):
    _finance(request)
    payouts = selectors.payout_list(organization=None)
    status = request.GET.get("status", "")
    if status in Payout.Status.values:
        payouts = payouts.filter(status=status)
    else:
        status = ""
    return render(request, "billing/finance_payouts.html", {
        "page": _page(request, payouts, INVOICES_PER_PAGE), "status": status, "statuses": Payout.Status.choices,
        "totals": selectors.payout_totals(organization=None),
    })


# --------------------------------------------------------------------------------------------- buyers


def _finance_of(request, *, provider: bool):
    """The active organization, if it is of the right kind and the user's role may read its finances."""
    organization = request.organization
    if organization is None or not (organization.is_provider if provider else organization.is_buyer):
        raise PermissionDenied(_("These pages are for members of a provider organization.") if provider
                               else _("These pages are for members of a buyer organization."))
    if not user_can(user=request.user, organization=organization, action="view_finance"):
        raise PermissionDenied(_("Only owners, admins and finance viewers of the organization can read its finances."))
    return organization


def _buyer_invoice(request, invoice_id: int) -> Invoice:
    # viewer_is_finance=False even for staff who are also members: the buyer's pages show what the buyer sees
    return selectors.invoice_get(organization=_finance_of(request, provider=False), viewer_is_finance=False, invoice_id=invoice_id)


@login_required
def buyer_invoices(request):
    organization = _finance_of(request, provider=False)
    now = timezone.now()
    month_start = local_month_start(instant=now, time_zone=selectors.billing_time_zone(organization_id=organization.pk))
    return render(request, "billing/buyer_invoices.html", {
        "page": _page(request, selectors.invoice_list(organization=organization), INVOICES_PER_PAGE),
        "spend": selectors.buyer_spend_between(organization_id=organization.pk, start=month_start, end=now),
        "month_start": month_start, "now": now,
    })


@login_required
def buyer_invoice(request, invoice_id: int):
    invoice = _buyer_invoice(request, invoice_id)
    organization = request.organization
    # Paying needs a role that may spend as well as read finances (the payment page's rule).
    can_pay = user_can(user=request.user, organization=organization, action="book")
    profile = selectors.billing_profile_of(organization=organization)
    attempts = list(selectors.payment_attempt_list(organization=organization, invoice_id=invoice.pk))
    return render(request, "billing/buyer_invoice.html", {
        "invoice": invoice, "lines": selectors.invoice_lines_with_context(invoice=invoice),
        "outstanding": selectors.invoice_outstanding_minor(invoice=invoice),
        "attempts": attempts, "payment_error_code": _payment_error_code(attempts),
        "payable": invoice.status in selectors.PAYABLE_STATUSES, "can_pay": can_pay,
        "card_label": profile.payment_method_label if profile and profile.payment_method_id else "",
    })


@login_required
def buyer_line_evidence(request, invoice_id: int, line_id: int):
    context = _evidence_context(request, invoice=_buyer_invoice(request, invoice_id), line_id=line_id)
    context["back"] = f"/market/invoices/{invoice_id}/"
    return render(request, "billing/line_evidence.html", context)


@login_required
def buyer_invoice_print(request, invoice_id: int):
    invoice = _buyer_invoice(request, invoice_id)
    return _print(request, invoice)


# --------------------------------------------------------------------------------------------- providers


@login_required
def provider_earnings(request):
    organization = _finance_of(request, provider=True)
    return render(request, "billing/provider_earnings.html", {
        "rows": selectors.provider_earnings(provider=organization),
        "summary": selectors.provider_earnings_summary(provider=organization),
        "payouts": selectors.payout_list(organization=organization)[:PAYOUTS_ON_EARNINGS],
    })
