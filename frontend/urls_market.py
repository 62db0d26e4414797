"""Buyer pages under /market/: search, quote, offer detail + booking, my reservations."""

from django.urls import path

from frontend.views import market, payments

urlpatterns = [
    path("", market.search, name="market-search"),
    path("quote/", market.quote, name="market-quote"),
    path("offers/<int:offer_id>/", market.offer_detail, name="market-offer"),
    path("reservations/", market.reservations, name="market-reservations"),
    path("reservations/<int:reservation_id>/", market.reservation_detail, name="market-reservation"),
    path("reservations/<int:reservation_id>/<str:action>/", market.reservation_action, name="market-reservation-action"),
    path("billing/payment/", payments.payment_method, name="billing-payment-method"),
    path("billing/payment/card/", payments.payment_method_saved, name="billing-payment-method-save"),
    path("billing/payment/invoices/<int:invoice_id>/pay/", payments.invoice_pay_now, name="billing-invoice-pay"),
]
