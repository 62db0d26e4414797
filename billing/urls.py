"""REST API routes of billing (mounted under /api/), read-only."""

from django.urls import path

from billing import api

urlpatterns = [
    path("invoices/", api.InvoiceListApi.as_view(), name="invoices"),
    path("invoices/<int:invoice_id>/", api.InvoiceDetailApi.as_view(), name="invoice-detail"),
    path("invoice-evidence/", api.InvoiceEvidenceListApi.as_view(), name="invoice-evidence"),
    path("credit-notes/", api.CreditNoteListApi.as_view(), name="credit-notes"),
    path("payment-attempts/", api.PaymentAttemptListApi.as_view(), name="payment-attempts"),
    path("payouts/", api.PayoutListApi.as_view(), name="payouts"),
]
