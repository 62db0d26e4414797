"""Buyer pages under /market/: search, quote, offer detail + booking, my reservations, invoices."""

from django.urls import path

from frontend.views import billing, dashboards, market, payments

urlpatterns = [
    path("", market.search, name="market-search"),
    path("dashboard/", dashboards.buyer, name="market-dashboard"),
    path("quote/", market.quote, name="market-quote"),
    path("offers/<int:offer_id>/", market.offer_detail, name="market-offer"),
    path("reservations/", market.reservations, name="market-reservations"),
    path("reservations/<int:reservation_id>/", market.reservation_detail, name="market-reservation"),
    path("invoices/", billing.buyer_invoices, name="market-invoices"),
    path("invoices/<int:invoice_id>/", billing.buyer_invoice, name="market-invoice"),
    path("invoices/<int:invoice_id>/print/", billing.buyer_invoice_print, name="market-invoice-print"),
    path("invoices/<int:invoice_id>/lines/<int:line_id>/", billing.buyer_line_evidence, name="market-line-evidence"),
    path("reservations/<int:reservation_id>/<str:action>/", market.reservation_action, name="market-reservation-action"),
    path("billing/payment/", payments.payment_method, name="billing-payment-method"),
    path("billing/payment/card/", payments.payment_method_saved, name="billing-payment-method-save"),
    path("billing/payment/invoices/<int:invoice_id>/pay/", payments.invoice_pay_now, name="billing-invoice-pay"),
]
