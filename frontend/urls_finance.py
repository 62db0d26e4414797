"""Finance staff pages, mounted at /finance/ (names: frontend:finance-...)."""

from django.urls import path

from frontend.views import billing, finance_runs

urlpatterns = [
    path("", billing.finance_queue, name="finance-queue"),
    path("invoices/", billing.finance_invoices, name="finance-invoices"),
    path("invoices.csv", billing.finance_invoices_csv, name="finance-invoices-csv"),
    path("invoices/<int:invoice_id>/", billing.finance_invoice, name="finance-invoice"),
    path("invoices/<int:invoice_id>/print/", billing.finance_invoice_print, name="finance-invoice-print"),
    path("invoices/<int:invoice_id>/lines/<int:line_id>/", billing.finance_line_evidence, name="finance-line-evidence"),
    path("invoices/<int:invoice_id>/approve/", billing.finance_invoice_approve, name="finance-invoice-approve"),
    path("invoices/<int:invoice_id>/void/", billing.finance_invoice_void, name="finance-invoice-void"),
    path("invoices/<int:invoice_id>/credit-note/", billing.finance_credit_note, name="finance-credit-note"),
    path("aging/", billing.finance_aging, name="finance-aging"),
    path("revenue/", billing.finance_revenue, name="finance-revenue"),
    path("payouts/", billing.finance_payouts, name="finance-payouts"),
    path("reconciliation/", billing.finance_reconciliation, name="finance-reconciliation"),
    path("runs/", finance_runs.finance_runs, name="finance-runs"),
    path("runs/billing/", finance_runs.finance_run_billing, name="finance-run-billing"),
    path("runs/export/", finance_runs.finance_run_export, name="finance-run-export"),
]
