"""Buyer pages under /market/: search, quote, offer detail + booking, my reservations."""

from django.urls import path

from frontend.views import dashboards, market

urlpatterns = [
    path("", market.search, name="market-search"),
    path("dashboard/", dashboards.buyer, name="market-dashboard"),
    path("quote/", market.quote, name="market-quote"),
    path("offers/<int:offer_id>/", market.offer_detail, name="market-offer"),
    path("reservations/", market.reservations, name="market-reservations"),
    path("reservations/<int:reservation_id>/", market.reservation_detail, name="market-reservation"),
    path("reservations/<int:reservation_id>/<str:action>/", market.reservation_action, name="market-reservation-action"),
]
